"""The toll-fraud guard, the outcome words and the ledger, without SIP."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings
from agent.outbound.api import call_request
from agent.outbound.dialer import RequestError
from agent.outbound.ledger import CapReached, Ledger, LedgerError
from agent.outbound.outcome import classify
from agent.outbound.policy import DAY_S, DailyCounts, TollPolicy, destination_key, restriction
from agent.outbound.target import TargetError, dial_uri, parse_target


def _policy(**kwargs: object) -> TollPolicy:
    defaults: dict[str, object] = {"allow": [r"\+49.*", r"sip:.*@pbx\.example\.com"]}
    defaults |= kwargs
    return TollPolicy(home_country_code="49", **defaults)  # type: ignore[arg-type]


def _rule(policy: TollPolicy, text: str, account: str = "") -> str | None:
    refusal = policy.check_destination(parse_target(text), account)
    return refusal.rule if refusal is not None else None


def test_targets_are_numbers_or_sip_uris_and_nothing_else() -> None:
    assert parse_target("+4930123456").is_number
    assert not parse_target("sip:alice@pbx.example.com").is_number
    for bad in ("030123456", "+0301", "tel:+4930", "sip:alice@pbx.example.com\r\nX: y", ""):
        with pytest.raises(TargetError):
            parse_target(bad)


def test_a_number_is_dialled_at_its_accounts_registrar() -> None:
    number = parse_target("+4930123456")
    assert (
        dial_uri(number, "sip:trunk.example.net:5070") == "sip:+4930123456@trunk.example.net:5070"
    )
    with pytest.raises(TargetError, match="account"):
        dial_uri(number, None)
    uri = parse_target("sip:alice@pbx.example.com")
    assert dial_uri(uri, None) == "sip:alice@pbx.example.com"


def test_only_whole_matches_of_the_allow_patterns_are_allowed() -> None:
    policy = _policy()
    assert _rule(policy, "+4930123456") is None
    assert _rule(policy, "sip:alice@pbx.example.com") is None
    # A pattern matches the whole target: a prefix match is not enough.
    assert _rule(policy, "sip:alice@pbx.example.com.evil.net") == "not_allowed"
    assert _rule(policy, "+3312345678") == "not_allowed"
    assert _rule(TollPolicy(), "+4930123456") == "not_allowed"


def test_premium_and_international_numbers_need_an_explicit_opt_in() -> None:
    policy = _policy(allow=[r"\+.*", r"sip:.*"])
    assert _rule(policy, "+4990012345") == "premium_rate"
    assert _rule(policy, "+4413012345") == "international"
    assert _rule(policy, "+88212345678") == "premium_rate"
    # Numbers a SIP URI names are the same numbers.
    assert _rule(policy, "sip:+4990012345@trunk") == "premium_rate"
    assert _rule(policy, "sip:090012345@trunk") == "premium_rate"
    assert _rule(policy, "sip:004413012345@trunk") == "international"
    # Escapes and visual separators do not hide a number.
    assert _rule(policy, "sip:%2B4990012345@trunk") == "premium_rate"
    assert _rule(policy, "sip:+49-(900)-12345@trunk;user=phone") == "premium_rate"
    assert _rule(policy, "sip:alice@trunk") is None
    opted = _policy(allow=[r"\+.*"], allow_restricted=[r"\+4990012345"])
    assert _rule(opted, "+4990012345") is None
    assert _rule(opted, "+4990099999") == "premium_rate"


def test_without_a_home_country_every_number_is_international() -> None:
    assert restriction("+4930123456", "") == (
        "international",
        "+4930123456 is international: outbound.home_country_code is not set",
    )
    # NANP numbers outside the US and Canada dial like domestic ones.
    assert restriction("+18095551234", "1") is not None
    assert restriction("+12125551234", "1") is None


def test_an_account_narrows_what_its_calls_may_reach() -> None:
    policy = _policy(account_allow={"trunk": [r"\+4930.*"]})
    assert _rule(policy, "+4930123456", "trunk") is None
    assert _rule(policy, "+4940123456", "trunk") == "account_not_allowed"
    assert _rule(policy, "+4940123456", "other") is None


def test_the_caps() -> None:
    policy = _policy(max_concurrent=2, max_per_destination_per_day=3)
    assert policy.check_caps(1, 2, "+4930") is None
    concurrent = policy.check_caps(2, 0, "+4930")
    assert concurrent is not None and concurrent.rule == "max_concurrent" and concurrent.is_cap
    daily = policy.check_caps(0, 3, "+4930")
    assert daily is not None and daily.rule == "max_per_destination_per_day"
    assert _policy(max_per_destination_per_day=0).check_caps(0, 99, "+4930") is None


def test_every_spelling_of_a_destination_counts_as_one() -> None:
    spellings = [
        "+4930123456",
        "sip:+4930123456@trunk",
        "sip:%2B4930123456@TRUNK",
        "sip:+49-30-123456@trunk;user=phone",
        "sip:030123456@trunk",
    ]
    keys = {destination_key(parse_target(text), "49") for text in spellings}
    assert keys == {"+4930123456"}
    assert destination_key(parse_target("sip:Alice@PBX.example.com")) == "sip:alice@pbx.example.com"


def test_calls_older_than_a_day_no_longer_count() -> None:
    counts = DailyCounts()
    counts.add("+4930", 1000.0)
    counts.add("+4930", 1000.0 + DAY_S - 1)
    assert counts.placed("+4930", 1000.0 + DAY_S) == 1
    counts.prune(1000.0 + 2 * DAY_S)
    assert counts.calls == {}


def test_the_ledger_survives_a_restart_and_refuses_when_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    Ledger(path).reserve("+4930", 100.0, cap=2)
    Ledger(path).reserve("+4930", 101.0, cap=2)
    # A new process (a new Ledger on the same file) sees the day's calls.
    with pytest.raises(CapReached) as reached:
        Ledger(path).reserve("+4930", 102.0, cap=2)
    assert reached.value.placed == 2
    assert Ledger(path).reserve("+4930", 100.0 + DAY_S, cap=2) == 1
    path.write_text("{not json")
    with pytest.raises(LedgerError):
        Ledger(path).reserve("+4930", 103.0, cap=2)
    path.write_text(json.dumps({"calls": {"+4930": ["yesterday"]}}))
    with pytest.raises(LedgerError):
        Ledger(path).placed("+4930", 103.0)


def _reserve_one(path: str) -> int:
    try:
        Ledger(Path(path)).reserve("+4930", 100.0, cap=3)
    except CapReached:
        return 0
    return 1


def test_processes_sharing_a_ledger_never_exceed_the_cap(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.json")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        placed = pool.map(_reserve_one, [path] * 8)
    assert sum(placed) == 3
    assert Ledger(Path(path)).placed("+4930", 100.0) == 3


@pytest.mark.parametrize(
    ("answered", "code", "timed_out", "responded", "expected"),
    [
        (True, 200, False, True, "answered"),
        (False, 486, False, True, "busy"),
        (False, 600, False, True, "busy"),
        (False, 487, True, True, "no_answer"),
        (False, 487, True, False, "failed"),
        (False, 480, False, True, "no_answer"),
        (False, 603, False, True, "rejected"),
        (False, 404, False, True, "rejected"),
        (False, 408, False, False, "failed"),
        (False, 503, False, False, "failed"),
    ],
)
def test_outcomes(
    answered: bool, code: int, timed_out: bool, responded: bool, expected: str
) -> None:
    assert (
        classify(
            answered=answered, code=code, ring_timed_out=timed_out, far_end_responded=responded
        )
        == expected
    )


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[outbound]\nallow = ['(']\n", {}, "outbound.allow[0]: invalid regular expression"),
        ("[outbound]\napi = true\n", {}, "outbound.api_token_env: name the environment"),
        (
            "[outbound]\napi = true\napi_token_env = 'T'\n",
            {"T": "short"},
            "unset or shorter than 16 characters",
        ),
        ("[outbound]\nhome_country_code = '+49'\n", {}, "is not a country code"),
        ("[outbound]\naccount_allow = { nope = ['.*'] }\n", {}, "'nope' is not a [[sip.accounts]]"),
        ("[outbound]\nmax_concurrent = 0\n", {}, "outbound.max_concurrent: must be at least 1"),
        (
            "[records]\ndir = ''\n[outbound]\nallow = ['.*']\n",
            {},
            "outbound.ledger_file: needed when records.dir is empty",
        ),
    ],
)
def test_bad_outbound_settings_stop_the_start(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(config, environ=environ)


def test_the_api_token_comes_from_the_environment_and_stays_secret(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[outbound]\napi = true\napi_token_env = 'CALLS_TOKEN'\n")
    settings = load_settings(config, environ={"CALLS_TOKEN": "0123456789abcdef-token"})
    assert settings.secrets.outbound_api_token == "0123456789abcdef-token"
    assert "0123456789abcdef" not in repr(settings)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "to"),
        ({"to": 5}, "to"),
        ({"to": "+4930", "bogus": 1}, "bogus"),
        ({"to": "+4930", "variables": {"a": 1}}, "variables"),
        ({"to": "+4930", "ring_timeout_s": True}, "ring_timeout_s"),
        ({"to": "+4930", "from": 7}, "from"),
    ],
)
def test_a_bad_call_request_names_its_field(body: object, field: str) -> None:
    with pytest.raises(RequestError) as error:
        call_request(body)
    assert error.value.field == field


def test_a_call_request() -> None:
    request = call_request(
        {"to": "+4930123", "account": "trunk", "variables": {"name": "Ada"}, "ring_timeout_s": 5}
    )
    assert (request.to, request.account, request.variables, request.ring_timeout_s) == (
        "+4930123",
        "trunk",
        {"name": "Ada"},
        5.0,
    )
