"""Outbound calls: what the agent does when it places the call.

``amd`` is answering-machine detection (sans-I/O, numpy only) and ``amd_settings`` its
``[outbound.amd]`` settings; ``target``, ``policy`` (the toll-fraud guard, no I/O), ``ledger``
(daily caps on disk), ``outcome``, ``session`` (``OutboundSession``), ``dialer`` and ``api``
(``/v1/calls``) place the call and report it. The call bridge imports ``amd``, so this
package's ``__init__`` imports nothing: an I/O module here would leak into the bridge's core.
"""
