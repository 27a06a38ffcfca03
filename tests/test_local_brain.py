"""The local backend's rule-based brain: intents, function calls, fallbacks, script loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import ConfigError
from agent.local.brain import DEFAULT_BRAIN_PATH, Brain, load_brain, normalize, parse_script
from agent.local.replies import ReplyRequest, ToolResult
from agent.local.voice import decide


def _enum(name: str, *options: str) -> dict[str, object]:
    return {"type": "object", "properties": {name: {"type": "string", "enum": list(options)}}}


TOOLS = {
    "end_call": {"type": "object", "properties": {"reason": {"type": "string"}}},
    "transfer_call": _enum("destination", "billing", "front_desk"),
}


@pytest.fixture(scope="module")
def brain() -> Brain:
    return load_brain()


def script(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "greeting": "Hi.",
        "fallback": "You said: {utterance}.",
        "not_heard": "Pardon?",
        "idle": "Still there?",
        "tool_done": "Done.",
        "tool_failed": "That failed.",
    }
    return {**base, **extra}


@pytest.mark.parametrize(
    ("utterance", "intent"),
    [
        ("What are your opening hours?", "opening_hours"),
        ("When do you close on Saturday?", "opening_hours"),
        ("I want to check my order status.", "order_status"),
        ("Where is my package?", "order_status"),
        ("Can I speak to a person, please?", "transfer"),
        ("Put me through to an operator.", "transfer"),
        ("Hello there.", "hello"),
        ("Goodbye, thank you.", "goodbye"),
        ("That's all, thanks.", "goodbye"),
        ("Do you sell garden furniture?", "fallback"),
        ("", "not_heard"),
        ("...", "not_heard"),
    ],
)
def test_default_script_intents(brain: Brain, utterance: str, intent: str) -> None:
    assert brain.answer(utterance, TOOLS).intent == intent


def test_the_fallback_echoes_what_was_said(brain: Brain) -> None:
    decision = brain.answer("Do you sell garden furniture?", TOOLS)
    assert decision.text.startswith("You said: Do you sell garden furniture. ")
    assert decision.tool_call is None


def test_intents_call_their_function_with_json_arguments(brain: Brain) -> None:
    transfer = brain.answer("Can I talk to someone?", TOOLS)
    assert transfer.text == "Let me put you through to a colleague."
    assert transfer.tool_call is not None
    assert transfer.tool_call.name == "transfer_call"
    assert json.loads(transfer.tool_call.arguments) == {"destination": "billing"}
    goodbye = brain.answer("Bye!", TOOLS)
    assert goodbye.tool_call is not None and goodbye.tool_call.name == "end_call"
    assert json.loads(goodbye.tool_call.arguments) == {"reason": "the caller said goodbye"}


def test_a_function_the_session_does_not_offer_is_not_called(brain: Brain) -> None:
    decision = brain.answer("Goodbye", {})
    assert decision.intent == "goodbye" and decision.tool_call is None
    # An intent without an `unavailable` line says its reply alone.
    assert decision.text == "Thank you for calling. Goodbye!"


def test_after_a_function_call(brain: Brain) -> None:
    done = brain.after_tool(ToolResult("transfer_call", "{}", "The caller was transferred."))
    assert done.text == "Transferring you now."
    generic = brain.after_tool(ToolResult("send_dtmf", "{}", "Sent the DTMF digits 1."))
    assert generic.text == "All done."
    for failure in ('{"error": "busy"}', '{"ok": false}', "Error: the transfer failed (486)"):
        failed = brain.after_tool(ToolResult("transfer_call", "{}", failure))
        assert failed.intent == "tool_failed", failure
        assert failed.text.startswith("Sorry, that did not work.")


def test_pattern_groups_fill_replies_and_arguments() -> None:
    brain = Brain(
        parse_script(
            script(
                intent=[
                    {
                        "name": "order",
                        "keywords": ["parcel"],
                        "patterns": ["order (number )?(?P<order>[0-9]+)"],
                        "reply": "Order {order} ships today.",
                        "tool": "lookup",
                        "arguments": {"order": "{order}", "said": ["{utterance}"]},
                    }
                ]
            )
        )
    )
    decision = brain.answer("Where is order number 4711?", {"lookup": {}})
    assert decision.text == "Order 4711 ships today."
    assert decision.tool_call is not None
    assert json.loads(decision.tool_call.arguments) == {
        "order": "4711",
        "said": ["Where is order number 4711"],
    }
    # A keyword match has no group values: the placeholder is left empty, not an error.
    assert brain.answer("my parcel", ()).text == "Order  ships today."


def test_intents_are_tried_in_file_order() -> None:
    brain = Brain(
        parse_script(
            script(
                intent=[
                    {"name": "first", "keywords": ["order"], "reply": "One."},
                    {"name": "second", "keywords": ["order status"], "reply": "Two."},
                ]
            )
        )
    )
    assert brain.answer("order status", {}).intent == "first"


def test_keywords_match_whole_words_only(brain: Brain) -> None:
    # "hi" inside "this" or "which" must not greet the caller.
    assert brain.answer("Which one is this?", {}).intent == "fallback"
    assert normalize("  What's UP, Doc?! ") == "what's up doc"


def test_decide_follows_the_conversation(brain: Brain) -> None:
    def request(**fields: object) -> ReplyRequest:
        base: dict[str, object] = {"user_text": None, "user_audio": b"", "tools": TOOLS}
        return ReplyRequest(  # type: ignore[arg-type]
            instructions="", user_audio_rate=24000, **{**base, **fields}
        )

    assert decide(brain, request()).intent == "greeting"
    assert decide(brain, request(idle=True)).intent == "idle"
    assert decide(brain, request(user_text="what are your hours")).intent == "opening_hours"
    heard = request(user_audio=b"\x00\x01" * 800, user_transcript=lambda: "goodbye")
    assert decide(brain, heard).intent == "goodbye"
    after = request(
        user_text="talk to a person", tool_result=ToolResult("transfer_call", "{}", "ok")
    )
    assert decide(brain, after).intent == "transfer:after_tool"


def test_the_shipped_script_loads_and_is_the_default() -> None:
    assert DEFAULT_BRAIN_PATH.name == "local_brain.toml" and DEFAULT_BRAIN_PATH.is_file()
    names = [intent.name for intent in load_brain(DEFAULT_BRAIN_PATH).script.intents]
    assert {"goodbye", "transfer", "order_status", "opening_hours", "hello"} <= set(names)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('fallback = ""', "invalid TOML"),  # a key given twice
        ("colour = 'blue'", "unknown key 'colour'"),
        ("[[intent]]\nname = 1", "'name' must be a non-empty string"),
        ("intent = [", "invalid TOML"),
    ],
)
def test_bad_scripts_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    lines = [f"{key} = {json.dumps(value)}" for key, value in script().items()]
    path = tmp_path / "brain.toml"
    path.write_text("\n".join([*lines, text]))
    with pytest.raises(ConfigError, match=message):
        load_brain(path)


@pytest.mark.parametrize(
    ("intent", "message"),
    [
        ({"name": "x", "reply": "Hi."}, "needs keywords or patterns"),
        ({"name": "x", "keywords": ["a"], "reply": "Hi {nobody}."}, "unknown placeholder"),
        ({"name": "x", "patterns": ["(unclosed"], "reply": "Hi."}, "bad pattern"),
        ({"name": "x", "keywords": ["a"], "reply": "Hi.", "arguments": {"a": 1}}, "without a"),
        ({"name": "x", "keywords": ["a"], "reply": "Hi.", "wat": 1}, "unknown key 'wat'"),
    ],
)
def test_bad_intents_are_rejected(intent: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_script(script(intent=[intent]))


def test_every_line_of_the_script_is_required() -> None:
    incomplete = script()
    del incomplete["fallback"]
    with pytest.raises(ValueError, match="'fallback' must be a non-empty string"):
        parse_script(incomplete)


def test_missing_script_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_brain(tmp_path / "nope.toml")


def test_the_transfer_goes_to_a_destination_the_profile_offers(brain: Brain) -> None:
    named = brain.answer("Can you put me through to billing?", TOOLS)
    assert named.tool_call is not None
    assert json.loads(named.tool_call.arguments) == {"destination": "billing"}
    anyone = brain.answer("I want to speak to a person.", TOOLS)
    assert anyone.tool_call is not None
    assert json.loads(anyone.tool_call.arguments) == {"destination": "billing"}
    desk = brain.answer(
        "talk to the front desk", {"transfer_call": _enum("destination", "x", "front_desk")}
    )
    assert desk.tool_call is not None
    assert json.loads(desk.tool_call.arguments)["destination"] == "front_desk"


def test_no_transfer_offered_says_so_instead_of_promising_one(brain: Brain) -> None:
    decision = brain.answer("Can I speak to a human?", {"end_call": {}})
    assert decision.tool_call is None
    assert decision.intent == "transfer:unavailable"
    assert "cannot put you through" in decision.text
    assert "transfer you" not in decision.text.lower()
