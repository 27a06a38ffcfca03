"""Outbound HTTP hooks: the signed post-call webhook (through a durable outbox) and the
pre-call lookup."""
