"""The ``voice-agent`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agent.config import SIP_ENGINES, ConfigError, Settings, load_settings
from agent.event_loop import run_serving
from agent.observe.logging import configure_logging, get_logger, register_secret


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-agent", description="SIP voice agent bridged to a realtime speech model"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer phone calls")
    serve.add_argument("--config", type=Path, help="TOML profile (default config/agent.toml)")
    serve.add_argument("--env-file", type=Path, help=".env file with secrets (default ./.env)")
    serve.add_argument("--sip-host", help="address to bind SIP and RTP to")
    serve.add_argument("--sip-port", type=int, help="SIP UDP port (0 picks a free one)")
    serve.add_argument("--engine", choices=SIP_ENGINES, help="the SIP stack (sip.engine)")
    serve.add_argument(
        "--allow-from",
        action="append",
        metavar="ADDR",
        help="a source address or CIDR that may call without authentication, in addition to "
        "sip.allow_from (repeatable; e.g. the front door's address)",
    )
    serve.add_argument("--realtime-url", help="ws(s):// URL of any realtime-protocol server")
    serve.add_argument("--webrtc-url", help="http(s):// URL of that server's WebRTC calls endpoint")
    serve.add_argument(
        "--dialect",
        choices=("ga", "beta"),
        help="protocol dialect of that URL (beta is deprecated)",
    )
    serve.add_argument(
        "--protocol",
        choices=("realtime", "live"),
        help="the model's API: realtime (the Realtime API) or live (GPT-Live)",
    )
    serve.add_argument(
        "--transport",
        choices=("websocket", "webrtc"),
        help="how the session is reached: websocket, or webrtc (media tracks, data channel)",
    )
    serve.add_argument(
        "--rtp-port",
        type=_port_range,
        metavar="FIRST[-LAST]",
        help="RTP ports: the first one, or a range such as 4000-4199",
    )
    serve.add_argument(
        "--sip-public-host", help="the address callers reach (SDP, Contact), behind NAT"
    )
    serve.add_argument("--http-host", help="address of the health and metrics listener")
    serve.add_argument(
        "--loop-nice",
        type=int,
        metavar="N",
        help="niceness of the event loop thread, -20..0 (audio.loop_nice; 0: off)",
    )
    serve.add_argument(
        "--http-port", type=int, help="port of the health and metrics listener (0: a free one)"
    )
    serve.add_argument("--log-format", choices=("console", "json"))
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--records-dir", help="directory for call transcripts ('' for none)")

    cluster = sub.add_parser(
        "cluster", help="Kamailio on the SIP port in front of N agents, one shared backend"
    )
    cluster.add_argument("--workers", type=int, help="agent processes (default: one per core)")
    cluster.add_argument("--config", type=Path, help="TOML profile of every worker")
    cluster.add_argument("--env-file", type=Path, help=".env file with secrets (default ./.env)")
    cluster.add_argument("--sip-host", help="address of the front door and the workers")
    cluster.add_argument(
        "--sip-port", type=int, help="the front door's port; worker i takes port + i"
    )
    cluster.add_argument(
        "--rtp-port",
        type=_port_range,
        metavar="FIRST-LAST",
        help="RTP ports shared out between the workers, a slice each",
    )
    cluster.add_argument(
        "--http-port", type=int, help="health and metrics of worker i on port + i (0: free ones)"
    )
    cluster.add_argument(
        "--allow",
        action="append",
        metavar="CIDR",
        help="callers the front door lets in (repeatable; default 127.0.0.0/8)",
    )
    cluster.add_argument("--realtime-url", help="a running realtime server for every worker")
    cluster.add_argument("--dialect", choices=("ga", "beta"), help="protocol dialect of that URL")
    cluster.add_argument(
        "--protocol",
        choices=("realtime", "live"),
        help="the model's API for every worker: realtime (the Realtime API) or live (GPT-Live)",
    )
    cluster.add_argument(
        "--engine", choices=SIP_ENGINES, help="the SIP stack of every worker (sip.engine)"
    )
    cluster.add_argument("--log-format", choices=("console", "json"))
    cluster.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    cluster.add_argument("--records-dir", help="directory for call transcripts ('' for none)")

    call = sub.add_parser(
        "call", help="place one call, hold the conversation, exit with its outcome"
    )
    call.add_argument("target", help="an E.164 number (+4930...) or a sip: URI")
    call.add_argument("--config", type=Path, help="TOML profile (default config/agent.toml)")
    call.add_argument("--env-file", type=Path, help=".env file with secrets (default ./.env)")
    call.add_argument("--profile", help="the [profiles.NAME] to talk with (outbound.profile)")
    call.add_argument("--account", help="the [[sip.accounts]] account to dial through")
    call.add_argument("--from", dest="from_number", help="the number to call from (From)")
    call.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the profile's {placeholders} (repeatable)",
    )
    call.add_argument(
        "--ring-timeout",
        type=float,
        metavar="S",
        help="CANCEL after ringing this long (outbound.ring_timeout_s)",
    )
    call.add_argument("--sip-host", help="address to bind SIP and RTP to")
    call.add_argument(
        "--sip-port", type=int, help="SIP UDP port (default: a free one, not sip.port)"
    )
    call.add_argument("--engine", choices=SIP_ENGINES, help="the SIP stack (sip.engine)")
    call.add_argument("--realtime-url", help="ws(s):// URL of any realtime-protocol server")
    call.add_argument(
        "--dialect",
        choices=("ga", "beta"),
        help="protocol dialect of that URL (beta is deprecated)",
    )
    call.add_argument(
        "--protocol",
        choices=("realtime", "live"),
        help="the model's API: realtime (the Realtime API) or live (GPT-Live)",
    )
    call.add_argument("--log-format", choices=("console", "json"))
    call.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    call.add_argument("--records-dir", help="directory for call transcripts ('' for none)")

    check = sub.add_parser("check", help="validate the config and open one realtime session")
    check.add_argument("--config", type=Path, help="TOML profile (default config/agent.toml)")
    check.add_argument("--env-file", type=Path, help=".env file with secrets (default ./.env)")
    check.add_argument("--realtime-url", help="ws(s):// URL of any realtime-protocol server")
    check.add_argument("--webrtc-url", help="http(s):// URL of that server's WebRTC calls endpoint")
    check.add_argument(
        "--dialect",
        choices=("ga", "beta"),
        help="protocol dialect of that URL (beta is deprecated)",
    )
    check.add_argument(
        "--protocol",
        choices=("realtime", "live"),
        help="the model's API: realtime (the Realtime API) or live (GPT-Live)",
    )
    check.add_argument(
        "--transport",
        choices=("websocket", "webrtc"),
        help="how the session is reached: websocket, or webrtc (media tracks, data channel)",
    )

    local = sub.add_parser("local-server", help="run the local realtime backend on its own")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=8765)
    local.add_argument("--log-format", choices=("console", "json"), default="console")
    local.add_argument(
        "--synthetic",
        action="store_true",
        help="answer with a synthetic voice-like tone (no speech models)",
    )
    local.add_argument(
        "--brain", type=Path, help="the voice backend's script (default config/local_brain.toml)"
    )
    return parser


def _port_range(text: str) -> tuple[int, int | None]:
    """``4000`` or ``4000-4199`` -> (first port, how many; None keeps the profile's)."""
    first, sep, last = text.partition("-")
    try:
        low = int(first)
        high = int(last) if sep else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port or FIRST-LAST") from None
    if not 1024 <= low <= 65535 or (high is not None and not low < high <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r}: ports must be 1024-65535, FIRST < LAST")
    return low, (high - low + 1 if high is not None else None)


def _settings(args: argparse.Namespace) -> Settings:
    realtime: dict[str, Any] = {}
    if args.realtime_url:
        realtime.update(provider="custom", url=args.realtime_url)
    # The cluster passes no transport of its own: its workers read the profile's.
    if getattr(args, "webrtc_url", None):
        realtime["webrtc_url"] = args.webrtc_url
    if args.dialect:
        realtime["dialect"] = args.dialect
    if args.protocol:
        realtime["protocol"] = args.protocol
    if getattr(args, "transport", None):
        realtime["transport"] = args.transport
    overrides: dict[str, dict[str, Any]] = {"realtime": realtime}
    if args.command in ("serve", "cluster"):
        rtp_port, rtp_range = args.rtp_port or (None, None)
        overrides |= {
            "sip": {
                "engine": getattr(args, "engine", None),
                "host": args.sip_host,
                "port": args.sip_port,
                "public_host": getattr(args, "sip_public_host", None),
                "rtp_port": rtp_port,
                "rtp_port_range": rtp_range,
            },
            "http": {"host": getattr(args, "http_host", None), "port": args.http_port},
            "log": {"format": args.log_format, "level": args.log_level},
            "records": {"dir": args.records_dir},
            "audio": {"loop_nice": getattr(args, "loop_nice", None)},
        }
    if args.command == "call":
        overrides |= {
            "sip": {
                "engine": args.engine,
                "host": args.sip_host,
                # Next to a serving agent on sip.port: a port of its own unless told.
                "port": args.sip_port if args.sip_port is not None else 0,
            },
            "log": {"format": args.log_format, "level": args.log_level},
            "records": {"dir": args.records_dir},
        }
    settings = load_settings(args.config, env_file=args.env_file, overrides=overrides)
    extra = tuple(getattr(args, "allow_from", None) or ())
    if extra:
        for source in extra:
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                raise ConfigError(f"--allow-from: {source!r} is not an address or CIDR") from None
        sip = settings.sip
        allow_from = (*sip.allow_from, *(s for s in extra if s not in sip.allow_from))
        settings = dataclasses.replace(
            settings, sip=dataclasses.replace(sip, allow_from=allow_from)
        )
    for value in (
        settings.secrets.openai_api_key,
        settings.secrets.azure_api_key,
        settings.secrets.realtime_api_key,
        settings.secrets.webhook_secret,
        settings.secrets.outbound_api_token,
        *settings.secrets.sip_passwords.values(),
    ):
        register_secret(value)
    return settings


def _serve(args: argparse.Namespace) -> int:
    from agent.app import AgentApp, install_signal_handlers  # imports PJSIP: only when serving
    from agent.realtime.endpoint import resolve_endpoint
    from agent.tools.server_mcp import server_mcp_tools

    settings = _settings(args)
    configure_logging(settings.log.format, settings.log.level)
    # Validate the provider before touching SIP, so a bad URL fails fast with status 2.
    resolve_endpoint(
        settings,
        local_url="ws://127.0.0.1:0/v1/realtime",
        local_calls_url="http://127.0.0.1:0/v1/realtime/calls",
    )
    server_mcp_tools(settings.tools.server_mcp, os.environ)

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        profile = args.config.stem if args.config else "agent"
        await AgentApp(settings, profile).run(stop)

    run_serving(main())
    return 0


def _cluster(args: argparse.Namespace) -> int:
    from agent.cluster.plan import default_workers, plan_cluster
    from agent.cluster.supervisor import Cluster, ClusterOptions

    settings = _settings(args)
    configure_logging(settings.log.format, settings.log.level)
    sip = settings.sip
    plan = plan_cluster(
        settings,
        args.workers or default_workers(),
        sip.host,
        sip.port,
        tuple(args.allow or ("127.0.0.0/8",)),
    )
    options = ClusterOptions(
        config=args.config,
        env_file=args.env_file,
        realtime_url=args.realtime_url or "",
        dialect=args.dialect or "",
        protocol=args.protocol or "",
        engine=args.engine or "",
        log_format=settings.log.format,
        log_level=args.log_level or "",
        records_dir=args.records_dir,
    )
    cluster = Cluster(settings, plan, options)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def _handle(signum: int) -> None:
            if stop.is_set():
                # The second signal: no drain.
                cluster.kill_all()
                os._exit(128 + signum)
            get_logger("cluster").info("cluster_signal", signal=signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _handle, signum)
        await cluster.run(stop)

    # asyncio's own loop: the supervisor carries no call, and starts its children in process
    # groups of their own, which uvloop's subprocess support does not offer.
    asyncio.run(main())
    return 0


#: How long ``voice-agent call --account`` waits for the account's first registration.
ACCOUNT_WAIT_S = 5.0


def _call(args: argparse.Namespace) -> int:
    from agent.app import AgentApp  # imports the SIP engines: only when calling
    from agent.outbound.dialer import (
        CallRequest,
        DialFailed,
        NotAccepting,
        Refused,
        RequestError,
        parse_variables,
        read_request,
    )
    from agent.outbound.outcome import EXIT_STATUS, FAILED, REFUSED

    settings = _settings(args)
    configure_logging(settings.log.format, settings.log.level)
    try:
        request = CallRequest(
            to=args.target,
            profile=args.profile or "",
            account=args.account or "",
            from_number=args.from_number or "",
            variables=parse_variables(args.var),
            ring_timeout_s=args.ring_timeout,
        )
        # Checked before anything starts: a bad argument is a usage error (2), at once.
        read_request(settings, request)
    except RequestError as exc:
        raise ConfigError(f"{exc.field}: {exc}") from None

    def report(outcome: str, detail: str) -> int:
        print(f"voice-agent call: {outcome}: {detail}", flush=True)
        return EXIT_STATUS[outcome]

    async def main() -> int:
        app = AgentApp(settings, args.config.stem if args.config else "agent")
        try:
            await app.start(http=False, inbound=False)
            assert app.outbound is not None
            if request.account and not await app.account_registered(
                request.account, ACCOUNT_WAIT_S
            ):
                # A trunk may still take the call (digest-authenticated INVITEs need no
                # registration): say so once and dial.
                get_logger("cli").warning(
                    "outbound_account_not_registered", account=request.account
                )
            try:
                session = await app.outbound.place(request)
            except Refused as exc:
                return report(REFUSED, f"{exc.refusal.rule}: {exc.refusal.detail}")
            except (DialFailed, NotAccepting) as exc:
                return report(FAILED, str(exc))
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, session.hang_up, "interrupted")
            await session.finished.wait()
            outcome = session.outcome or FAILED
            timings = session.timings()
            parts = [
                f"call_id={session.call_id}",
                f"sip_code={session.sip_code}",
                *(f"{name}={value}" for name, value in timings.items() if value is not None),
                f"reason={session.bridge.outcome.reason!r}",
            ]
            if session.record_path is not None:
                parts.append(f"record={session.record_path}")
            return report(outcome, " ".join(parts))
        finally:
            await app.close()

    return asyncio.run(main())


def _check(args: argparse.Namespace) -> int:
    from agent.check import run_check

    settings = _settings(args)
    configure_logging(settings.log.format, "warning")
    ok = asyncio.run(run_check(settings, sys.stdout))
    return 0 if ok else 1


def _local_server(args: argparse.Namespace) -> int:
    from agent.local.backend import make_backend
    from agent.local.server import run_local_server

    configure_logging(args.log_format)
    backend = make_backend("synthetic" if args.synthetic else "voice", str(args.brain or ""))
    with contextlib.suppress(KeyboardInterrupt):
        run_serving(run_local_server(args.host, args.port, backend))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command == "call":
            return _call(args)
        if args.command == "cluster":
            return _cluster(args)
        return _local_server(args)
    except ConfigError as exc:
        print(f"voice-agent: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"voice-agent: error: {exc.strerror or exc}", file=sys.stderr)
        get_logger("cli").debug("os_error", error=str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
