"""ToolRunner against the real local realtime server over WebSocket: custom tools, MCP, failures.

The server side emits the model's function calls; a small shell (the protocol adapter, the
call's bridge and the runner, as ``agent.call`` wires them) answers; the test reads what was
sent back (``session.received``), checks every client event against the protocol oracle, and
checks the call's log lines and transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.actions import RunTool
from agent.config import AgentProfile, CustomToolSettings, McpServerSettings, ToolSettings
from agent.observe.transcript import RecordWriter
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.connection import RealtimeConnection
from agent.realtime.dialect import Dialect
from agent.realtime.endpoint import RealtimeEndpoint
from agent.realtime.session_config import session_spec
from agent.tools.catalog import ToolCatalog
from agent.tools.registry import Tool, ToolSet
from agent.tools.runner import ToolRunner
from testbed.oracle import validate_client_event
from testbed.peers import free_port
from testbed.recording import RecordedSession, RecordingServer

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = str(REPO / "config" / "examples")


@dataclass
class Harness:
    session: RecordedSession
    runner: ToolRunner
    transcript: RecordWriter
    dialect: Dialect

    async def call(self, name: str, arguments: str, call_id: str) -> str:
        """Emit the model's function call; the output the agent sent for it."""
        await self.session.emit(
            {
                "type": "response.function_call_arguments.done",
                "response_id": "resp_model",
                "item_id": f"item_{call_id}",
                "output_index": 0,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
            }
        )
        return await self.output(call_id)

    async def output(self, call_id: str, timeout_s: float = 10.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.session.received:
                item = event.get("item") or {}
                if item.get("type") == "function_call_output" and item["call_id"] == call_id:
                    return str(item["output"])
            await asyncio.sleep(0.01)
        raise AssertionError(f"no function_call_output for {call_id}")

    def check_sent(self) -> None:
        for event in self.session.received:
            validate_client_event(self.dialect, event)


@contextlib.asynccontextmanager
async def harness(
    tools: list[Tool], settings: ToolSettings | None = None, dialect: Dialect = Dialect.GA
) -> AsyncIterator[Harness]:
    settings = settings or ToolSettings()
    async with RecordingServer() as server:
        endpoint = RealtimeEndpoint("local", server.url_for(dialect), dialect)
        conn = await RealtimeConnection.open(endpoint, 5.0)
        toolset = ToolSet(tools)
        adapter = RealtimeAdapter(dialect)
        spec = session_spec(AgentProfile(), tools=toolset.declarations())
        bridge = CallBridge(BridgeConfig(session=spec))
        transcript = RecordWriter(None, "c-test")
        runner = ToolRunner(toolset, settings, transcript)

        async def carry_out(step: Step) -> None:
            for request in step.requests:
                for text in adapter.encode(request):
                    await conn.send(text)
            for action in step.actions:
                if isinstance(action, RunTool):
                    runner.spawn(run(action), action.name)

        async def run(action: RunTool) -> None:
            assert action.call_id is not None
            result = await runner.invoke(action.name, action.arguments, call_id=action.call_id)
            await carry_out(bridge.tool_result(action.call_id, result.output, result.respond))

        async def pump() -> None:
            async for message in conn.messages():
                for event in adapter.parse(message):
                    await carry_out(bridge.server_event(event, 0.0))

        await carry_out(bridge.session_config())

        reader = asyncio.create_task(pump())
        try:
            yield Harness(server.sessions[0], runner, transcript, dialect)
        finally:
            await runner.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await conn.close()


def _custom(function: str, **fields: Any) -> Tool:
    from agent.tools.custom import load_custom_tool

    spec = CustomToolSettings(function=f"tools_example:{function}", **fields)
    return load_custom_tool(spec, [EXAMPLES], "test")


def _tool(name: str, handler: Any, **properties: Any) -> Tool:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return Tool(name, f"The {name} tool.", schema, handler, source="custom")


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA])
async def test_custom_sync_and_async_tools_answer_the_model(dialect: Dialect) -> None:
    tools = [_custom("order_status"), _custom("opening_hours")]
    async with harness(tools, dialect=dialect) as h:
        assert await h.call("order_status", '{"order_id": "a1001"}', "c1") == (
            "Order A1001 is shipped on Monday."
        )
        assert await h.call("opening_hours", '{"day": "sunday"}', "c2") == "closed"
        # The output is followed by a request for the model to answer it.
        kinds = [event["type"] for event in h.session.received]
        first_output = kinds.index("conversation.item.create")
        assert "response.create" in kinds[first_output:]
        h.check_sent()
        lines = [line for line in h.transcript.lines if line.get("kind") == "tool_call"]
        assert [(line["tool"], line["outcome"]) for line in lines] == [
            ("order_status", "ok"),
            ("opening_hours", "ok"),
        ]


async def test_bad_arguments_unknown_tools_and_raising_tools_become_error_outputs() -> None:
    async def explode(args: dict[str, Any]) -> str:
        raise RuntimeError("database on fire")

    tools = [_custom("order_status"), _tool("explode", explode)]
    async with harness(tools) as h:
        assert (await h.call("order_status", '{"order_id": ', "c1")).startswith(
            "Error: the arguments are not valid JSON"
        )
        out = await h.call("order_status", '{"order_id": 5, "extra": 1}', "c2")
        assert out.startswith("Error: invalid arguments for order_status")
        assert "$.order_id: expected string" in out and "unexpected property 'extra'" in out
        assert "no tool named 'refund'" in await h.call("refund", "{}", "c3")
        out = await h.call("explode", "{}", "c4")
        assert out == "Error: explode failed: RuntimeError: database on fire"
        # A tool's own exception reaches the model as its message.
        assert "there is no order A9" in await h.call("order_status", '{"order_id": "A9"}', "c5")
        # The conversation goes on: the next call works.
        assert "waiting for payment" in await h.call("order_status", '{"order_id":"A1002"}', "c6")
        h.check_sent()
        outcomes = [line["outcome"] for line in h.transcript.lines if line["kind"] == "tool_call"]
        assert outcomes == ["error", "error", "error", "failed", "failed", "ok"]


async def test_a_slow_tool_times_out_while_others_carry_on() -> None:
    release = asyncio.Event()

    async def slow(args: dict[str, Any]) -> str:
        await release.wait()
        return "too late"

    async def quick(args: dict[str, Any]) -> str:
        return "quick answer"

    settings = ToolSettings(timeout_s=5.0, timeouts={"slow": 0.3})
    async with harness([_tool("slow", slow), _tool("quick", quick)], settings) as h:
        await h.session.emit(
            {
                "type": "response.function_call_arguments.done",
                "response_id": "resp_model",
                "item_id": "item_s",
                "output_index": 0,
                "call_id": "s1",
                "name": "slow",
                "arguments": "{}",
            }
        )
        started = time.monotonic()
        # The slow tool runs as its own task: another call is answered meanwhile.
        assert await h.call("quick", "{}", "q1") == "quick answer"
        assert time.monotonic() - started < 0.3
        out = await h.output("s1")
        assert out == "Error: slow did not finish within 0.3 s and was abandoned"
        line = next(line for line in h.transcript.lines if line.get("tool") == "slow")
        assert line["outcome"] == "timeout" and 250 <= line["duration_ms"] < 2000
        h.check_sent()


async def test_sync_tools_run_in_threads_and_never_block_the_loop() -> None:
    def sleepy() -> str:
        """Blocks its thread for a while."""
        time.sleep(0.5)
        return "slept"

    from agent.tools.custom import _handler

    blocked = Tool("sleepy", "Sleeps.", {"type": "object", "properties": {}}, _handler(sleepy))
    async with harness([blocked]) as h:
        task = asyncio.create_task(h.call("sleepy", "{}", "z1"))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert await task == "slept"
        assert ticks >= 20, "the event loop stalled while a sync tool ran"


async def test_output_is_capped_and_arguments_redacted() -> None:
    async def chatty(args: dict[str, Any]) -> str:
        return "x" * 5000

    settings = ToolSettings(max_output_chars=200, redact={"pay_invoice": ("card_number",)})
    tools = [_tool("chatty", chatty), _custom("pay_invoice")]
    with structlog.testing.capture_logs() as logs:
        async with harness(tools, settings) as h:
            out = await h.call("chatty", "{}", "c1")
            assert out.startswith("x" * 200) and out.endswith("[output cut: 4800 more characters]")
            args = '{"invoice": "INV-7", "card_number": "4111111111111111", "amount": 12.5}'
            assert "ending 1111" in await h.call("pay_invoice", args, "c2")
            transcript = [line for line in h.transcript.lines if line.get("tool") == "pay_invoice"]
    assert transcript[0]["arguments"] == {"invoice": "INV-7", "card_number": "***", "amount": 12.5}
    logged = [entry for entry in logs if entry.get("event") == "tool_call"]
    assert {entry["tool"] for entry in logged} == {"chatty", "pay_invoice"}
    assert "4111111111111111" not in repr(logs)
    assert all("duration_ms" in entry and "outcome" in entry for entry in logged)


# -- MCP ----------------------------------------------------------------------------------------
def _mcp_settings(**fields: Any) -> ToolSettings:
    server = McpServerSettings(
        name="crm", command=(sys.executable, str(REPO / "tests" / "mcp_server.py")), **fields
    )
    return ToolSettings(mcp=(server,), timeouts={"crm_slow_report": 0.5})


async def test_mcp_stdio_server_tools_are_listed_once_and_proxied() -> None:
    settings = _mcp_settings(prefix="crm_")
    catalog = ToolCatalog(settings)
    try:
        tools = await catalog.tools()
        names = [tool.name for tool in tools]
        assert names == ["crm_account_balance", "crm_close_account", "crm_slow_report"]
        assert tools[0].parameters["required"] == ["account"]
        assert tools[0].description == "The balance of a customer account."
        # Listed once per process: a second call start reuses the connection and the list.
        server = catalog.mcp[0]
        client = server._client
        assert await catalog.tools() == tools and server._client is client

        async with harness(tools, settings) as h:
            out = await h.call("crm_account_balance", '{"account": "77"}', "m1")
            assert out == "Account 77 has a balance of 42.50 EUR."
            out = await h.call("crm_close_account", '{"account": "77"}', "m2")
            assert out.startswith("Error:") and "close_account" in out
            out = await h.call("crm_account_balance", '{"acct": "77"}', "m3")
            assert "missing required property 'account'" in out
            out = await h.call("crm_slow_report", '{"seconds": 3}', "m4")
            assert out == "Error: crm_slow_report did not finish within 0.5 s and was abandoned"
            # The connection survives a timed-out call.
            assert "42.50" in await h.call("crm_account_balance", '{"account": "1"}', "m5")
            h.check_sent()
            sources = {line["tool"] for line in h.transcript.lines if line["kind"] == "tool_call"}
            assert "crm_account_balance" in sources
    finally:
        await catalog.close()


async def test_mcp_include_filter_and_unreachable_servers() -> None:
    catalog = ToolCatalog(_mcp_settings(include=("account_balance",)))
    dead = McpServerSettings(name="dead", command=(sys.executable, "-c", "pass"))
    broken = ToolCatalog(ToolSettings(mcp=(dead,)))
    try:
        assert [tool.name for tool in await catalog.tools()] == ["account_balance"]
        # A server that exits at once: its tools are left out, the call goes on.
        with structlog.testing.capture_logs() as logs:
            assert await broken.tools() == []
        assert any(entry["event"] == "mcp_server_unavailable" for entry in logs)
    finally:
        await catalog.close()
        await broken.close()


async def test_mcp_streamable_http_server() -> None:
    port = free_port(socket.SOCK_STREAM)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "tests" / "mcp_server.py"), "--http", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    server = McpServerSettings(name="crm-http", url=f"http://127.0.0.1:{port}/mcp")
    catalog = ToolCatalog(ToolSettings(mcp=(server,)))
    try:
        deadline = time.monotonic() + 15
        while True:  # until the server accepts connections
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP HTTP server never started"
                await asyncio.sleep(0.1)
        tools = {tool.name: tool for tool in await catalog.tools()}
        assert "account_balance" in tools
        balance = await tools["account_balance"].handler({"account": "9"})
        assert balance == "Account 9 has a balance of 42.50 EUR."
    finally:
        await catalog.close()
        proc.terminate()
        await proc.wait()
