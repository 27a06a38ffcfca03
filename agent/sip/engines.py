"""The SIP engines by name: adding one is a module under ``agent/sip/`` plus a line here.

Each engine is imported only when chosen, so a process never loads a SIP library it does not
use (and the choice of engine stays a configuration value, ``sip.engine``).
"""

from __future__ import annotations

import importlib

from agent.config import SipSettings
from agent.sip.engine import IncomingCall, SipEngine
from agent.sip.registration import Registrations
from agent.sip.request_policy import Admission, CallRefused, Gatekeeper

#: engine name -> "module:class" of its ``SipEngine``.
ENGINES = {
    "pjsip": "agent.sip.pjsip.engine:PjsipEngine",
    "baresip": "agent.sip.baresip.engine:BaresipEngine",
}


def create_engine(
    settings: SipSettings,
    on_incoming: IncomingCall,
    admission: Admission,
    on_call_refused: CallRefused | None = None,
    gatekeeper: Gatekeeper | None = None,
    registrations: Registrations | None = None,
) -> SipEngine:
    """The engine ``settings.engine`` names, not started (``registrations``: the
    ``[[sip.accounts]]`` it registers).

    Every engine puts a ``RequestPolicy(settings.user, admission, on_call_refused,
    gatekeeper)`` in front of its stack."""
    module_name, _, class_name = ENGINES[settings.engine].partition(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    engine: SipEngine = engine_class(
        settings, on_incoming, admission, on_call_refused, gatekeeper, registrations
    )
    return engine
