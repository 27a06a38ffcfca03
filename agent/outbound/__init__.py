"""Outbound calls: the toll-fraud policy, the dialer, its outcomes and the control API."""
