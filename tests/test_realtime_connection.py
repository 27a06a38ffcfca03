"""Connection failures are told apart, in one line, and never carry the key."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agent.realtime.connection import RealtimeConnectError, RealtimeConnection
from agent.realtime.dialect import Dialect
from agent.realtime.endpoint import RealtimeEndpoint
from testbed.peers import REPO

KEY = "sk-test-never-log-me-0123456789"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _http_status(status: int, reason: str) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": {"message": "nope"}}'
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    return handle


async def _plain_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Answers a TLS ClientHello with plain text, as a misconfigured wss:// endpoint would.
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(10)
    writer.close()


@pytest.fixture
async def serve_raw() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


def _endpoint(url: str) -> RealtimeEndpoint:
    return RealtimeEndpoint("custom", url, Dialect.GA, {"Authorization": f"Bearer {KEY}"})


@pytest.mark.parametrize(
    ("status", "reason", "words"),
    [
        (401, "Unauthorized", "API key was rejected"),
        (403, "Forbidden", "no access"),
        (404, "Not Found", "deployment name, URL path and api-version"),
        (429, "Too Many Requests", "rate limited"),
    ],
)
async def test_http_status_is_explained(
    serve_raw: Callable[[Handler], Awaitable[int]], status: int, reason: str, words: str
) -> None:
    port = await serve_raw(_http_status(status, reason))
    url = f"ws://127.0.0.1:{port}/openai/realtime?api-version=2025-04-01-preview&deployment=x"
    with pytest.raises(RealtimeConnectError) as caught:
        await RealtimeConnection.open(_endpoint(url), 2.0)
    message = str(caught.value)
    assert caught.value.status == status
    assert f"HTTP {status}" in message and words in message
    assert "api-version=2025-04-01-preview" in message  # says which URL was used
    assert KEY not in message and "\n" not in message


async def test_timeout_is_explained(serve_raw: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve_raw(_silent)
    with pytest.raises(RealtimeConnectError, match="timed out"):
        await RealtimeConnection.open(_endpoint(f"ws://127.0.0.1:{port}/v1/realtime"), 0.3)


async def test_tls_error_is_explained(serve_raw: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve_raw(_plain_text)
    with pytest.raises(RealtimeConnectError, match="TLS error") as caught:
        await RealtimeConnection.open(_endpoint(f"wss://127.0.0.1:{port}/v1/realtime"), 2.0)
    assert KEY not in str(caught.value)


async def test_refused_is_explained() -> None:
    with pytest.raises(RealtimeConnectError, match="cannot connect"):
        await RealtimeConnection.open(_endpoint("ws://127.0.0.1:9/v1/realtime"), 2.0)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args, "--env-file", os.devnull],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_opens_a_local_session_with_no_key() -> None:
    result = _cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provider: local" in result.stdout
    assert "dialect:  ga" in result.stdout
    assert "result:   ok" in result.stdout


def test_check_opens_a_local_gpt_live_session() -> None:
    result = _cli("check", "--protocol", "live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/v1/live/sessions" in result.stdout and "protocol: GPT-Live" in result.stdout
    assert "result:   ok" in result.stdout


async def test_check_reports_a_rejected_key_without_printing_it(
    serve_raw: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await serve_raw(_http_status(401, "Unauthorized"))
    url = f"ws://127.0.0.1:{port}/v1/realtime"
    result = await asyncio.to_thread(
        _cli, "check", "--realtime-url", url, "--dialect", "beta", env={"REALTIME_API_KEY": KEY}
    )
    assert result.returncode == 1
    assert f"url:      {url}" in result.stdout
    assert "dialect:  beta" in result.stdout
    assert "HTTP 401" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_check_with_bad_config_exits_2(tmp_path: object) -> None:
    result = _cli("check", "--realtime-url", "http://not-a-websocket")
    assert result.returncode == 2
    assert "is not a ws:// or wss:// URL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_close_is_prompt_while_the_server_is_still_streaming() -> None:
    """An ended call no longer reads; a streaming server must not stall its close."""
    from websockets.asyncio.server import ServerConnection, serve

    closed = asyncio.Event()

    async def streaming(ws: ServerConnection) -> None:
        chunk = json.dumps({"type": "response.output_audio.delta", "delta": "A" * 65536})
        try:
            for _ in range(400):  # ~26 MB: far more than the sockets buffer
                await ws.send(chunk)
        except Exception:
            pass
        finally:
            closed.set()

    async with serve(streaming, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await RealtimeConnection.open(_endpoint(f"ws://127.0.0.1:{port}/v1/realtime"), 5)
        await asyncio.sleep(0.5)  # the server fills the socket; nothing reads it
        started = asyncio.get_running_loop().time()
        await conn.close()
        assert asyncio.get_running_loop().time() - started < 1.5
        await asyncio.wait_for(closed.wait(), 2)


async def test_send_now_writes_in_order_and_holds_back_when_the_server_falls_behind() -> None:
    """The uplink's synchronous write: every message arrives, in order, while the server
    keeps up; once the server stops reading, flow control holds writes back and send_now
    says so instead of buffering without bound; once closed, it writes nothing."""
    from websockets.asyncio.server import ServerConnection, serve

    received: list[str] = []
    reading = asyncio.Event()
    reading.set()
    first_batch = asyncio.Event()

    async def collecting(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, str)
            received.append(message)
            if len(received) == 50:
                first_batch.set()
            await reading.wait()  # cleared: the server reads no more, its buffers fill

    async with serve(collecting, "127.0.0.1", 0, max_queue=1) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await RealtimeConnection.open(_endpoint(f"ws://127.0.0.1:{port}/v1/realtime"), 5)
        assert all(conn.send_now(json.dumps({"n": n})) for n in range(50))
        await asyncio.wait_for(first_batch.wait(), 5)
        assert [json.loads(m)["n"] for m in received] == list(range(50))

        reading.clear()
        big = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 65536})
        written = 0
        for _ in range(2000):  # ~130 MB at most: far beyond the sockets' buffers
            if not conn.send_now(big):
                break
            written += 1
            await asyncio.sleep(0)  # the transport writes what the socket takes
        else:
            pytest.fail("send_now never held back while the server read nothing")
        assert written > 0
        reading.set()
        await conn.close()
        assert not conn.send_now(json.dumps({"n": "after close"}))
