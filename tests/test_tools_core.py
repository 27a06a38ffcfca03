"""Tools without I/O: argument schemas, the function-call protocol, caller DTMF, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.actions import RunTool
from agent.bridge.requests import SessionSpec
from agent.config import ConfigError, CustomToolSettings, ToolSettings, load_settings
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.dialect import Dialect
from agent.realtime.session_config import session_update
from agent.tools.builtins import TransferOutcome, builtin_tools
from agent.tools.custom import load_custom_tool
from agent.tools.dtmf import DtmfCollector, pressed_text
from agent.tools.registry import ToolSet, redacted
from agent.tools.schema import SchemaError, schema_from_callable, validate
from testbed.oracle import validate_client_event

REPO = Path(__file__).resolve().parent.parent

# -- schema validation ------------------------------------------------------------------------
_ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^A[0-9]+$"},
        "count": {"type": "integer", "minimum": 1},
        "speed": {"type": "string", "enum": ["slow", "fast"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "gift": {"type": "boolean"},
        "price": {"type": "number"},
    },
    "required": ["id"],
    "additionalProperties": False,
}


def test_valid_arguments_pass() -> None:
    args = {"id": "A12", "count": 2, "speed": "fast", "tags": ["x"], "gift": True, "price": 1}
    assert validate(_ORDER, args) == []
    assert validate(_ORDER, {"id": "A1", "count": 3.0}) == []  # JSON has one number type


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({}, "missing required property 'id'"),
        ({"id": 7}, "$.id: expected string, got integer"),
        ({"id": "B1"}, "does not match"),
        ({"id": "A1", "count": 0}, "below the minimum"),
        ({"id": "A1", "count": True}, "expected integer, got boolean"),
        ({"id": "A1", "speed": "warp"}, "'warp' is not one of 'slow', 'fast'"),
        ({"id": "A1", "tags": ["a", 2]}, "$.tags[1]: expected string"),
        ({"id": "A1", "tags": ["a", "b", "c"]}, "at most 2 items"),
        ({"id": "A1", "colour": "red"}, "unexpected property 'colour'"),
        ({"id": "A1", "price": "9"}, "$.price: expected number, got string"),
    ],
)
def test_invalid_arguments_are_named(args: dict[str, object], problem: str) -> None:
    errors = validate(_ORDER, args)
    assert errors and any(problem in error for error in errors), errors


def test_schema_from_type_hints_and_docstring() -> None:
    def book(
        room: str, nights: int, rate: float, breakfast: bool, kind: Literal["single", "double"],
        guests: list[str], note: str = "",
    ) -> str:  # fmt: skip
        """Book a room.

        Args:
            room: The room number.
            nights: How many nights,
                at least one.
        """
        return ""

    description, schema = schema_from_callable(book, "book")
    assert description == "Book a room."
    props = schema["properties"]
    assert props["room"] == {"type": "string", "description": "The room number."}
    assert props["nights"]["description"] == "How many nights, at least one."
    assert props["rate"]["type"] == "number" and props["breakfast"]["type"] == "boolean"
    assert props["kind"] == {"type": "string", "enum": ["single", "double"]}
    assert props["guests"] == {"type": "array", "items": {"type": "string"}}
    assert schema["required"] == ["room", "nights", "rate", "breakfast", "kind", "guests"]
    assert validate(schema, {"room": "1", "nights": 1}) != []


def test_unsupported_hints_are_refused() -> None:
    def bad(when: dict[str, int]) -> str:
        return ""

    def untyped(x) -> str:  # type: ignore[no-untyped-def]
        return ""

    with pytest.raises(SchemaError, match="not supported"):
        schema_from_callable(bad, "bad")
    with pytest.raises(SchemaError, match="no type hint"):
        schema_from_callable(untyped, "untyped")


def test_redaction_masks_named_fields_at_any_depth() -> None:
    args = {"card_number": "4111", "payer": {"card_number": "5500", "name": "Ann"}, "n": 1}
    assert redacted(args, ["card_number"]) == {
        "card_number": "***",
        "payer": {"card_number": "***", "name": "Ann"},
        "n": 1,
    }


# -- the function-call protocol, through the bridge and the adapter, on the wire -------------
class Wire:
    """A call's bridge fed wire events of ``dialect``; what it sends, as wire events."""

    def __init__(self, dialect: Dialect = Dialect.GA) -> None:
        self.dialect = dialect
        self.adapter = RealtimeAdapter(dialect)
        self.bridge = CallBridge(BridgeConfig(session=SessionSpec("Be brief.", "marin")))
        self.calls: list[RunTool] = []

    def _wire(self, step: Step) -> list[dict[str, Any]]:
        self.calls += [a for a in step.actions if isinstance(a, RunTool)]
        events = [event for request in step.requests for event in self.adapter.wire(request)]
        for event in events:
            validate_client_event(self.dialect, event)
        return events

    def server(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        parsed = self.adapter.parse(json.dumps(event))
        assert parsed, event
        sent: list[dict[str, Any]] = []
        for internal in parsed:
            sent += self._wire(self.bridge.server_event(internal, 0.0))
        return sent

    def output(self, call_id: str, text: str, respond: bool = True) -> list[dict[str, Any]]:
        return self._wire(self.bridge.tool_result(call_id, text, respond))


def _call_done(call_id: str, name: str | None, arguments: str, response: str = "resp_1") -> dict:
    event = {
        "type": "response.function_call_arguments.done",
        "event_id": f"event_{call_id}",
        "response_id": response,
        "item_id": f"item_{call_id}",
        "output_index": 0,
        "call_id": call_id,
        "arguments": arguments,
    }
    if name is not None:
        event["name"] = name
    return event


def _created(response: str, request: dict | None = None) -> dict:
    """``response.created``; ``request`` is our response.create when it started the response."""
    metadata = (request or {}).get("response", {}).get("metadata")
    return {"type": "response.created", "response": {"id": response, "metadata": metadata}}


def _types(events: list[dict]) -> list[str]:
    return [event["type"] for event in events]


def _done(response: str) -> dict:
    return {"type": "response.done", "response": {"id": response}}


def _added(event: dict) -> dict:
    return {"type": "conversation.item.added", "item": event["item"]}


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA])
def test_output_waits_for_the_active_response_to_finish(dialect: Dialect) -> None:
    wire = Wire(dialect)
    wire.server(_created("resp_1"))
    if dialect is Dialect.BETA:  # beta's arguments.done has no name: it comes from the item
        item = {"id": "item_c1", "type": "function_call", "name": "lookup", "call_id": "c1"}
        wire.server({"type": "response.output_item.added", "item": item})
    wire.server(_call_done("c1", "lookup" if dialect is Dialect.GA else None, "{}"))
    assert [(c.call_id, c.name) for c in wire.calls] == [("c1", "lookup")]
    # A repeated done event does not start the tool twice.
    wire.server(_call_done("c1", "lookup", "{}"))
    assert len(wire.calls) == 1

    events = wire.output("c1", "42")
    assert _types(events) == ["conversation.item.create"]  # response still active
    assert events[0]["item"]["type"] == "function_call_output"
    assert events[0]["item"]["call_id"] == "c1" and events[0]["item"]["output"] == "42"
    assert _types(wire.server(_done("resp_1"))) == ["response.create"]


def test_one_response_answers_outputs_it_covers() -> None:
    wire = Wire()
    first = wire.output("c1", "a")
    assert _types(first) == ["conversation.item.create", "response.create"]
    # A second output while our request is in flight: no second response.create.
    second = wire.output("c2", "b")
    assert _types(second) == ["conversation.item.create"]
    wire.server(_added(second[0]))
    wire.server(_created("resp_2", first[-1]))
    # The response we asked for began after c2 was added: it answers both.
    assert wire.server(_done("resp_2")) == []
    assert not wire.bridge.tools.waiting_for_response


def test_items_never_acknowledged_are_not_asked_about_forever() -> None:
    wire = Wire()
    requests = len(_types(wire.output("c1", "x"))) - 1
    for n in range(5):
        # A server that echoes no metadata and acknowledges nothing.
        wire.server({"type": "response.created", "response": {"id": f"r{n}"}})
        requests += _types(wire.server(_done(f"r{n}"))).count("response.create")
    assert requests == 2


def test_output_added_after_a_response_began_gets_its_own() -> None:
    wire = Wire()
    wire.server(_created("resp_vad"))  # server VAD answered the caller meanwhile
    out = wire.output("c1", "late")
    wire.server(_added(out[0]))
    assert _types(wire.server(_done("resp_vad"))) == ["response.create"]


def test_a_refused_response_create_is_retried_after_the_active_one() -> None:
    wire = Wire()
    assert wire.output("c1", "x")[-1]["type"] == "response.create"
    # The server started a response of its own first, then refused ours.
    wire.server(_created("resp_vad"))
    busy = {"code": "conversation_already_has_active_response", "message": "busy"}
    wire.server({"type": "error", "error": busy})
    # resp_vad began before our item was acknowledged: it does not answer it.
    assert wire.bridge.tools.waiting_for_response
    assert _types(wire.server(_done("resp_vad"))) == ["response.create"]


def test_output_without_reply_asks_for_no_response() -> None:
    wire = Wire()
    events = wire.output("c1", "The call has ended.", respond=False)
    assert _types(events) == ["conversation.item.create"]
    assert wire.server(_done("resp_1")) == []


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA])
def test_session_update_declares_builtin_tools(dialect: Dialect) -> None:
    settings = ToolSettings(
        builtin=("end_call", "transfer_call", "send_dtmf"),
        transfer_destinations={"billing": "sip:billing@pbx.example.com"},
    )
    tools = ToolSet(builtin_tools(settings, control=None))  # type: ignore[arg-type]
    assert tools.names == ["end_call", "transfer_call", "send_dtmf"]
    transfer = tools.get("transfer_call")
    assert transfer is not None
    assert transfer.parameters["properties"]["destination"]["enum"] == ["billing"]
    # The URI itself is never shown to the model.
    assert "pbx.example.com" not in str(tools.declarations())
    from agent.config import AgentProfile

    update = session_update(AgentProfile(), dialect, tools=tools.declarations())
    validate_client_event(dialect, update)
    assert update["session"]["tools"][0] == {
        "type": "function",
        "name": "end_call",
        "description": tools.declarations()[0]["description"],
        "parameters": tools.declarations()[0]["parameters"],
    }


def test_transfer_outcome() -> None:
    assert TransferOutcome(200, "OK").ok and TransferOutcome(202, "Accepted").ok
    assert not TransferOutcome(486, "Busy Here").ok


# -- caller DTMF --------------------------------------------------------------------------------
def test_dtmf_digits_typed_quickly_make_one_message() -> None:
    dtmf = DtmfCollector({}, batch=1.0)
    for at, digit in ((0.0, "1"), (0.4, "2"), (0.9, "3")):
        assert dtmf.press(digit, at).flush is None
    assert dtmf.due(1.5) is None  # 1.0 s after the last key, not the first
    assert dtmf.next_deadline == pytest.approx(1.9)
    assert dtmf.due(1.9) == "123"
    assert dtmf.due(5.0) is None and dtmf.next_deadline is None
    assert pressed_text("123") == "The caller pressed 1 2 3 on the phone keypad."


def test_mapped_digit_acts_at_once_after_passing_on_earlier_digits() -> None:
    dtmf = DtmfCollector({"0": "transfer_call:human", "#": "end_call"}, batch=1.0)
    dtmf.press("4", 0.0)
    step = dtmf.press("0", 0.2)
    assert step.flush == "4"
    assert step.action is not None and step.action.tool == "transfer_call"
    assert step.action.arguments == {"destination": "human"}
    end = dtmf.press("#", 0.3)
    assert end.flush is None and end.action is not None and end.action.tool == "end_call"
    assert dtmf.next_deadline is None


def test_dtmf_not_told_to_the_model_when_disabled() -> None:
    dtmf = DtmfCollector({}, batch=0.5, to_model=False)
    dtmf.press("5", 0.0)
    assert dtmf.due(10.0) is None


# -- configuration ------------------------------------------------------------------------------
def _load(tmp_path: Path, text: str) -> ToolSettings:
    path = tmp_path / "profile.toml"
    path.write_text(text)
    return load_settings(path, environ={}).tools


def test_example_profile_loads_with_every_custom_tool() -> None:
    from agent.tools.catalog import ToolCatalog

    settings = load_settings(REPO / "config" / "examples" / "tools_profile.toml", environ={})
    tools = settings.tools
    assert tools.transfer_destinations["human"].startswith("sip:")
    assert tools.redact["pay_invoice"] == ("card_number",)
    assert tools.mcp[0].command[-1] == "tests/mcp_server.py"
    catalog = ToolCatalog(tools)
    names = [tool.name for tool in catalog.custom]
    assert names == ["order_status", "opening_hours", "pay_invoice", "order_status_strict"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tools]\nbuiltin = ["hang_up"]\n', "'hang_up' is not one of"),
        ('[tools]\nbuiltin = ["transfer_call"]\n', "needs [tools.transfer_destinations]"),
        ('[tools.transfer_destinations]\nx = "+15551234"\n', "is not a SIP URI"),
        ('[tools.dtmf_actions]\n"5" = "transfer_call:nowhere"\n', "'transfer_call:<name>'"),
        ('[tools.dtmf_actions]\n"X" = "end_call"\n', "is not a DTMF digit"),
        ("[tools.timeouts]\nx = 0\n", "must be positive"),
        ('[tools]\nsend_dtmf_pattern = "[0-9"\n', "invalid regular expression"),
        ('[[tools.custom]]\nfunction = "no_colon"\n', "expected 'module:function'"),
        ('[[tools.mcp]]\nname = "a"\n', "either command (stdio) or url"),
        ('[[tools.mcp]]\nname = "a"\nurl = "ftp://x"\n', "not an http(s):// URL"),
        ("[tools]\ncolour = 1\n", "unknown key 'colour'"),
        ('[[tools.custom]]\nfunction = "m:f"\nweight = 1\n', "unknown key 'weight'"),
    ],
)
def test_bad_tool_config_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert message in str(info.value)


def test_custom_tool_load_errors_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "shop_tools.py").write_text(
        "def nodoc(x: int) -> int:\n    return x\n\nvalue = 3\n"
        "def dicty(x: dict) -> int:\n    '''Dict.'''\n    return 1\n"
    )
    path = [str(tmp_path)]
    cases = {
        "missing_module_xyz:f": "cannot import",
        "shop_tools:absent": "has no 'absent'",
        "shop_tools:value": "is not callable",
        "shop_tools:nodoc": "needs a docstring or a description",
        "shop_tools:dicty": "give the schema in 'parameters'",
    }
    for target, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            load_custom_tool(CustomToolSettings(function=target), path, "tools.custom[0]")
    bad_schema = CustomToolSettings(function="shop_tools:dicty", parameters='{"type": "string"}')
    with pytest.raises(ConfigError, match="must be an object schema"):
        load_custom_tool(bad_schema, path, "tools.custom[0]")
    declared = CustomToolSettings(
        function="shop_tools:dicty", parameters='{"type": "object", "properties": {}}'
    )
    assert load_custom_tool(declared, path, "w").description == "Dict."
