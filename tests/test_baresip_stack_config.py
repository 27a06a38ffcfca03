"""What the baresip engine asks of the stack for ``sip.host``: a wildcard is no interface."""

from __future__ import annotations

import dataclasses

from agent.config import SipSettings
from agent.sip.baresip.stack_config import runtime_config


def test_a_wildcard_host_lets_baresip_find_every_interface() -> None:
    """``net_interface 0.0.0.0`` matched no interface: baresip opened no SIP socket at all
    (nothing on the port in ``ss -uapn``) and never answered."""
    wildcard = runtime_config(dataclasses.replace(SipSettings(), host="0.0.0.0"), 5060)
    assert wildcard.net_interface is None
    assert "sip_listen 0.0.0.0:5060" in (wildcard.extra_config_text or "")
    bound = runtime_config(dataclasses.replace(SipSettings(), host="127.0.0.1"), 5060)
    assert bound.net_interface == "127.0.0.1"
