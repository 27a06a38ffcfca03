"""Outbound calls: what the agent does when it places the call.

``amd`` is answering-machine detection (sans-I/O, numpy only) and ``amd_settings`` its
``[outbound.amd]`` settings. The call bridge imports them, so this package's ``__init__``
imports nothing: an I/O module here would leak into the bridge's core.
"""
