"""The toll-fraud guard: whether an outbound call may be placed, decided before any INVITE.

Sans-I/O: fed the target, the account, the calls in progress and the destination's calls of
the last 24 hours; returns ``None`` or the ``Refusal`` naming the rule that refused. The
rules, in order (README "Outbound calls"):

1. ``[outbound.account_allow] NAME = [...]``: a call through account NAME must match one of
   its patterns (an account can only narrow what ``[outbound]`` allows);
2. ``[outbound] allow``: the target, exactly as given (an E.164 number or a SIP URI), must
   match one pattern in full (``re.fullmatch``); nothing is allowed by default;
3. the built-in deny list: premium-rate prefixes (``PREMIUM_PREFIXES``) and any number
   outside ``[outbound] home_country_code`` (international) are refused even when an
   ``allow`` pattern matches, unless an ``allow_restricted`` pattern matches the target too:
   that is the explicit opt-in;
4. the caps: ``max_concurrent`` calls in progress, ``max_per_destination_per_day`` calls to
   one destination in any 24 hours (``DailyCounts``; persisted by ``agent.outbound.ledger``).

A SIP URI whose user part is a number is checked as that number: ``sip:+4990012@trunk`` is
the premium number it names, and a user part starting with an international access code
(00, 011) is international.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from agent.outbound.target import Target, sip_uri_user

#: Premium-rate and shared-cost prefixes (E.164, country code included), and what they are.
#: Calls to them cost the caller a per-minute rate that the callee shares: the classic
#: toll-fraud destination. Refused unless an ``allow_restricted`` pattern lets one through.
PREMIUM_PREFIXES: dict[str, str] = {
    "+1900": "NANP premium rate (900)",
    "+1976": "NANP premium rate (976)",
    "+449": "UK premium rate (09)",
    "+4470": "UK personal numbers (070)",
    "+44871": "UK service numbers (0871)",
    "+44872": "UK service numbers (0872)",
    "+44873": "UK service numbers (0873)",
    "+49900": "Germany premium rate (0900)",
    "+49137": "Germany mass calling (0137)",
    "+49118": "Germany directory services (0118)",
    "+3389": "France premium rate (089)",
    "+39892": "Italy premium rate (892)",
    "+39899": "Italy premium rate (899)",
    "+34803": "Spain premium rate (803)",
    "+34806": "Spain premium rate (806)",
    "+34807": "Spain premium rate (807)",
    "+34905": "Spain mass calling (905)",
    "+43900": "Austria premium rate (0900)",
    "+43930": "Austria premium rate (0930)",
    "+43939": "Austria premium rate (0939)",
    "+4190": "Switzerland premium rate (090x)",
    "+3190": "Netherlands premium rate (090x)",
    "+3290": "Belgium premium rate (090x)",
    "+46900": "Sweden premium rate (0900)",
    "+46939": "Sweden premium rate (0939)",
    "+46944": "Sweden premium rate (0944)",
    "+61190": "Australia premium rate (190x)",
    "+870": "Inmarsat satellite",
    "+881": "global mobile satellite systems",
    "+882": "international networks",
    "+883": "international networks",
    "+979": "international premium rate",
}
#: NANP area codes (+1 NPA) outside the US and Canada: international calls at international
#: rates though they dial like domestic ones ("one-ring" fraud). Counted as international when
#: the home country code is 1.
NANP_ABROAD = frozenset(
    [
        "242",
        "246",
        "264",
        "268",
        "284",
        "345",
        "441",
        "473",
        "649",
        "658",
        "664",
        "721",
        "758",
        "767",
        "784",
        "809",
        "829",
        "849",
        "868",
        "869",
        "876",
    ]
)
#: National (trunk) prefixes, for numbers a SIP URI's user part gives in national format
#: (``sip:0900123@trunk`` with home country 49 is +49900123). Countries not listed use 0.
_TRUNK_PREFIX = {"1": "1", "39": "", "7": "8"}
#: International access codes a national-format user part may start with.
_ACCESS_CODES = ("00", "011")

NOT_ALLOWED = "not_allowed"
ACCOUNT_NOT_ALLOWED = "account_not_allowed"
PREMIUM_RATE = "premium_rate"
INTERNATIONAL = "international"
CONCURRENT_CAP = "max_concurrent"
DAILY_CAP = "max_per_destination_per_day"
#: The process has no room for another call, in or out (``sip.max_calls``).
AT_CAPACITY = "at_capacity"
#: Refusals by a cap (HTTP 429: try again later) rather than by a destination rule (403).
CAP_RULES = (CONCURRENT_CAP, DAILY_CAP, AT_CAPACITY)
DAY_S = 86400.0


@dataclass(frozen=True)
class Refusal:
    """Why a call was not placed: the rule (a stable name) and a sentence for people."""

    rule: str
    detail: str

    @property
    def is_cap(self) -> bool:
        return self.rule in CAP_RULES


def restriction(number: str, home_country_code: str) -> tuple[str, str] | None:
    """(rule, detail) when ``number`` (E.164) is on the built-in deny list, else None."""
    for prefix, what in PREMIUM_PREFIXES.items():
        if number.startswith(prefix):
            return PREMIUM_RATE, f"{number} is {what} ({prefix})"
    home = f"+{home_country_code}" if home_country_code else ""
    if not home or not number.startswith(home):
        where = (
            f"outside the home country +{home_country_code}"
            if home
            else ("international: outbound.home_country_code is not set")
        )
        return INTERNATIONAL, f"{number} is {where}"
    if home_country_code == "1" and number[2:5] in NANP_ABROAD:
        return INTERNATIONAL, f"{number} is NANP area code {number[2:5]}, outside the US/Canada"
    return None


def _uri_number(user: str, home_country_code: str) -> tuple[str, bool]:
    """The E.164 number a SIP URI's user part names ("" for none), and whether it starts
    with an international access code."""
    # As the far end reads it: %-escapes decoded (``%2B49900`` is +49900), visual
    # separators (RFC 3966's - . ( )) dropped.
    digits = re.sub(r"[-.()]", "", unquote(user))
    if digits.startswith("+") and digits[1:].isdigit():
        return digits, False
    if not digits.isdigit():
        return "", False
    if digits.startswith(_ACCESS_CODES):
        return "", True
    trunk = _TRUNK_PREFIX.get(home_country_code, "0")
    if home_country_code and digits.startswith(trunk) and len(digits) > len(trunk) + 2:
        return f"+{home_country_code}{digits[len(trunk) :]}", False
    return "", False


@dataclass
class TollPolicy:
    """The destination rules of ``[outbound]`` (compiled once; see the module docstring)."""

    allow: Sequence[str] = ()
    allow_restricted: Sequence[str] = ()
    account_allow: Mapping[str, Sequence[str]] = field(default_factory=dict)
    home_country_code: str = ""
    max_concurrent: int = 2
    max_per_destination_per_day: int = 3

    def __post_init__(self) -> None:
        self._allow = [re.compile(p) for p in self.allow]
        self._restricted = [re.compile(p) for p in self.allow_restricted]
        self._accounts = {
            name: [re.compile(p) for p in patterns] for name, patterns in self.account_allow.items()
        }

    def check_destination(self, target: Target, account: str = "") -> Refusal | None:
        """Rules 1-3: may ``target`` be dialled (through ``account``) at all?"""
        text = target.text
        patterns = self._accounts.get(account) if account else None
        if patterns is not None and not any(p.fullmatch(text) for p in patterns):
            return Refusal(
                ACCOUNT_NOT_ALLOWED,
                f"{text} matches no outbound.account_allow.{account} pattern",
            )
        opted_in = any(p.fullmatch(text) for p in self._restricted)
        if not opted_in and not any(p.fullmatch(text) for p in self._allow):
            return Refusal(NOT_ALLOWED, f"{text} matches no outbound.allow pattern")
        if opted_in:
            return None
        found = self._restricted_number(target)
        if found is not None:
            rule, detail = found
            return Refusal(rule, f"{detail}; only an outbound.allow_restricted pattern allows it")
        return None

    def _restricted_number(self, target: Target) -> tuple[str, str] | None:
        if target.is_number:
            return restriction(target.text, self.home_country_code)
        number, access_code = _uri_number(sip_uri_user(target.text), self.home_country_code)
        if access_code:
            return INTERNATIONAL, f"{target.text} dials an international access code"
        return restriction(number, self.home_country_code) if number else None

    def check_caps(self, active: int, placed_last_day: int, destination: str) -> Refusal | None:
        """Rule 4: ``active`` outbound calls in progress, ``placed_last_day`` to this one."""
        if active >= self.max_concurrent:
            return Refusal(
                CONCURRENT_CAP,
                f"{active} outbound calls in progress (outbound.max_concurrent = "
                f"{self.max_concurrent})",
            )
        cap = self.max_per_destination_per_day
        if cap and placed_last_day >= cap:
            return Refusal(
                DAILY_CAP,
                f"{placed_last_day} calls to {destination} in the last 24 hours "
                f"(outbound.max_per_destination_per_day = {cap})",
            )
        return None


def destination_key(target: Target, home_country_code: str = "") -> str:
    """What the daily cap counts calls by: the number a target names (however a SIP URI
    spells it: escaped, with separators, in national format), else the URI lower-cased (SIP
    URI schemes and hosts are case-insensitive), so no spelling of one destination gets a
    day's calls of its own."""
    if target.is_number:
        return target.text
    number, _ = _uri_number(sip_uri_user(target.text), home_country_code)
    return number or target.text.lower()


@dataclass
class DailyCounts:
    """When each destination was called in the last 24 hours (unix seconds)."""

    calls: dict[str, list[float]] = field(default_factory=dict)

    def placed(self, destination: str, now: float) -> int:
        return sum(1 for at in self.calls.get(destination, ()) if now - at < DAY_S)

    def add(self, destination: str, now: float) -> None:
        self.calls.setdefault(destination, []).append(now)

    def prune(self, now: float) -> None:
        """Forget calls older than a day (the file stays as small as a day's calls)."""
        for destination in list(self.calls):
            kept = [at for at in self.calls[destination] if now - at < DAY_S]
            if kept:
                self.calls[destination] = kept
            else:
                del self.calls[destination]

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "calls": self.calls}

    @classmethod
    def from_json(cls, data: Any) -> DailyCounts:
        """Counts from a ledger file's JSON; raises ``ValueError`` for anything else (a
        ledger that cannot be read must not reset the caps)."""
        raw = data.get("calls") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            raise ValueError("not an outbound ledger")
        calls: dict[str, list[float]] = {}
        for destination, times in raw.items():
            if not isinstance(times, list) or not all(
                isinstance(t, int | float) and not isinstance(t, bool) for t in times
            ):
                raise ValueError(f"bad entry for {str(destination)[:40]!r}")
            calls[str(destination)] = [float(t) for t in times]
        return cls(calls)
