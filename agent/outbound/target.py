"""What ``voice-agent call TARGET`` (and ``POST /v1/calls``'s ``to``) may name, and the SIP URI
an INVITE for it goes to.

A target is either an E.164 number (``+`` and 2 to 15 digits: it goes through a
``[[sip.accounts]]`` account, to ``sip:<number>@<the account's registrar host>``), or a SIP URI
(``sip:`` / ``sips:``, dialled as it is). Anything else is refused before policy even looks
at it: a national-format number would mean different things on different trunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.sip.registration import registrar_host

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: A SIP URI of printable ASCII with a host: what both engines can put in a Request-URI.
_SIP_URI = re.compile(r"sips?:(?:[!-?A-~]+@)?[A-Za-z0-9.\-\[\]:]+(?:;[!-~]*)?")


class TargetError(ValueError):
    """Not a target the agent can dial; ``str()`` says why (one line, safe to show)."""


@dataclass(frozen=True)
class Target:
    """A destination as given, and what it is."""

    #: Exactly as given (what the allow patterns and the daily cap see).
    text: str
    #: True for an E.164 number, False for a SIP URI.
    is_number: bool


def sip_uri_user(uri: str) -> str:
    """The user part of ``sip:user@host`` ("" when it has none)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    user, at, _ = rest.partition("@")
    return user.split(";", 1)[0] if at else ""


def parse_target(text: str) -> Target:
    """``text`` as a target; raises ``TargetError``."""
    text = text.strip()
    if _E164.fullmatch(text):
        return Target(text, True)
    if _SIP_URI.fullmatch(text):
        return Target(text, False)
    raise TargetError(
        f"{text[:80]!r} is neither an E.164 number (+ and 2-15 digits) nor a sip: URI"
    )


def dial_uri(target: Target, registrar: str | None) -> str:
    """The Request-URI for ``target``: a SIP URI as given; a number at the account's
    registrar host (``registrar``: its ``[[sip.accounts]]`` registrar URI)."""
    if not target.is_number:
        return target.text
    if registrar is None:
        raise TargetError(
            f"{target.text} is a phone number: name the [[sip.accounts]] account to dial it "
            'through (--account / "account"), or dial a sip: URI'
        )
    host, port = registrar_host(registrar)
    scheme = "sips" if registrar.startswith("sips:") else "sip"
    return f"{scheme}:{target.text}@{host}{f':{port}' if port else ''}"
