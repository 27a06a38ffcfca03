"""Composition root: the SIP endpoint, call admission, per-call sessions, the HTTP listener
(health, readiness, metrics) and shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.audio.notice import Notice, NoticeError, load_notice
from agent.call import CallSession
from agent.config import ConfigError, Settings
from agent.event_loop import loop_kind
from agent.http.listener import HttpListener
from agent.http.routes import health_routes
from agent.observe.backend_probe import BackendProbe
from agent.observe.call_metrics import CallMetrics
from agent.observe.gc_pauses import GcPauses
from agent.observe.gc_pauses import settle as settle_gc
from agent.observe.ids import new_call_id
from agent.observe.loop_load import LoopLoad
from agent.observe.loop_priority import raise_loop_priority
from agent.observe.metrics import AgentMetrics
from agent.observe.readiness import Readiness
from agent.observe.record_store import RecordStore
from agent.observe.retention import keep_swept
from agent.outbound.api import MAX_REQUEST_BYTES, call_routes
from agent.outbound.dialer import OutboundCalls
from agent.outbound.session import OutboundFacts, OutboundSession
from agent.profiles import ProfileRuntime, profile_settings
from agent.realtime.endpoint import (
    RealtimeEndpoint,
    choose_provider,
    configuration_warnings,
    resolve_endpoint,
)
from agent.sip.callers import RegistrarSources
from agent.sip.engine import EngineCall, EngineStartError
from agent.sip.engines import create_engine
from agent.sip.gatekeeper import CallGatekeeper
from agent.sip.message import uri_user
from agent.sip.registration import FAILED, REGISTERED, AccountState, Registrations
from agent.sip.request_policy import Answer, unavailable
from agent.tools.catalog import ToolCatalog
from agent.webhook.lookup import CallLookup
from agent.webhook.payload import call_ended_body
from agent.webhook.sender import WebhookSender, outbox_for

if TYPE_CHECKING:
    from agent.local.server import LocalRealtimeServer

log = structlog.get_logger("app")


class AgentApp:
    """One agent process: answers calls on its SIP port, up to ``sip.max_calls`` at once."""

    def __init__(self, settings: Settings, profile: str = "agent") -> None:
        self.settings = settings
        #: The profile's name (its file's stem), for the call records.
        self.profile = profile
        self.record_store = RecordStore()
        self.notice: Notice | None = None
        if settings.records.recording_notice:
            try:
                self.notice = load_notice(Path(settings.records.recording_notice))
            except NoticeError as exc:
                raise ConfigError(f"records.recording_notice: {exc}") from None
        self.readiness = Readiness(
            {
                "sip": self._sip_up,
                "backend": self._backend_reachable,
                "not_draining": lambda: not self.draining,
                # A trunk account not registered takes no calls: not ready for a dispatcher.
                "accounts_registered": lambda: self.registrations.all_registered,
            }
        )
        #: The loop thread's busy share; new calls wait while it is over sip.max_loop_busy.
        self.loop_load = LoopLoad(settings.sip.max_loop_busy)
        self.metrics = AgentMetrics(
            lambda: len(self.sessions), lambda: self.readiness.ready, lambda: self.loop_load.busy
        )
        self.registrars = RegistrarSources()
        self.gatekeeper = CallGatekeeper(settings, self.registrars)
        self.registrations = Registrations(
            settings, self.registrars, on_change=self._registration_changed
        )
        for name in self.registrations.accounts:
            self.metrics.registration_state(name, False)
        self.sip = create_engine(
            settings.sip,
            self._on_incoming,
            self._admission,
            self.metrics.call_rejected,
            self.gatekeeper,
            self.registrations,
        )
        # Custom tools are imported here, so a broken one stops the start (ConfigError).
        self.tool_catalog = ToolCatalog(settings.tools)
        #: Each [profiles.NAME] with its own settings and tools; endpoints once started.
        self.profiles: dict[str, ProfileRuntime] = {
            name: ProfileRuntime(profile_settings(settings, name), None)
            for name in settings.profiles
        }
        self.sessions: dict[str, CallSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.local_server: LocalRealtimeServer | None = None
        self.endpoint: RealtimeEndpoint | None = None
        self.draining = False
        hook = settings.webhook
        secret = settings.secrets.webhook_secret
        self.webhook: WebhookSender | None = None
        if hook.url:
            self.webhook = WebhookSender(hook, secret, outbox_for(hook, settings.records.dir))
        self.lookup: CallLookup | None = None
        if hook.lookup_url:
            self.lookup = CallLookup(hook, secret, settings.profiles)
        self.http: HttpListener | None = None
        self._poller: asyncio.Task[None] | None = None
        self._probe: BackendProbe | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        #: The calls this process places (``voice-agent call``, the API); set by ``start``.
        self.outbound: OutboundCalls | None = None
        #: False while only placing calls (``voice-agent call``): INVITEs are refused.
        self.inbound = True

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain active calls and shut down cleanly."""
        pauses = GcPauses(self.metrics.observe_gc)
        nice = self.settings.audio.loop_nice if self.sip.loop_paces_audio else 0
        refused = raise_loop_priority(nice)
        try:
            await self.start(settle=True)
            # Told once started: a start that fails says only why.
            if refused is None and nice:
                log.info("loop_priority", nice=nice)
            elif refused is not None:
                log.warning("loop_priority_unavailable", nice=nice, reason=refused)
            pauses.install()
            await stop.wait()
            await self.drain(self.settings.sip.drain_timeout_s)
        finally:
            pauses.uninstall()
            await self.close()

    async def start(self, *, http: bool = True, inbound: bool = True, settle: bool = False) -> None:
        """Start everything: the embedded backend, SIP, (``http``) the HTTP listener.
        ``inbound=False``: every INVITE is refused (503), as ``voice-agent call`` runs.
        ``settle``: a serving process, whose start-up objects live as long as it does, freezes
        them out of the garbage collector's work (``agent.observe.gc_pauses``)."""
        self.inbound = inbound
        if choose_provider(self.settings) == "local":
            # Imported here: the local backend's models load only when it is used.
            from agent.local.backend import make_backend
            from agent.local.server import LocalRealtimeServer

            local = self.settings.local
            self.local_server = LocalRealtimeServer(
                "127.0.0.1",
                0,
                backend=make_backend(local.backend, local.brain),
                webrtc=self.settings.realtime.transport == "webrtc",
            )
            await self.local_server.start()
        records = self.settings.records
        if records.dir and records.retention_days > 0:
            self._retention = asyncio.create_task(
                keep_swept(Path(records.dir), records.retention_days), name="records-retention"
            )
        local_server = self.local_server
        local_url = local_server.url if local_server else None
        calls_url = local_server.calls_url if local_server else None
        self.endpoint = resolve_endpoint(self.settings, local_url, calls_url)
        for runtime in self.profiles.values():
            runtime.start(local_url, calls_url)
        if self.webhook is not None:
            # Before SIP: what a previous run left in the outbox goes out first.
            await self.webhook.start()
        try:
            await self.sip.start()
        except EngineStartError as exc:
            raise ConfigError(str(exc)) from None
        self._poller = asyncio.create_task(self.sip.run())
        self.outbound = OutboundCalls(
            self.settings,
            self.sip,
            self._outbound_session,
            has_room=self._has_room,
            on_outcome=self.metrics.outbound_call,
        )
        if http:
            settings = self.settings.http
            routes = health_routes(self.readiness, self.metrics)
            if self.settings.outbound.api:
                routes += call_routes(self.outbound, self.settings.secrets.outbound_api_token)
            self.http = HttpListener(
                settings.host, settings.port, routes, max_body_bytes=MAX_REQUEST_BYTES
            )
            await self.http.start()
        if settle:
            # Before the probe: readiness must not wait behind the one long collection.
            began = time.perf_counter()
            frozen = settle_gc()
            log.info(
                "gc_settled",
                frozen_objects=frozen,
                ms=round((time.perf_counter() - began) * 1e3, 1),
            )
        self._probe = BackendProbe(self.endpoint.url)
        self._probe_task = asyncio.create_task(self._probe.run(), name="backend-probe")
        # After the start-up's own work (imports done, the settling collection): from here
        # on the loop's time is the calls'.
        self.loop_load.start(asyncio.get_running_loop())
        log.info(
            "agent_listening",
            sip=f"sip:{self.settings.sip.user}@{self.settings.sip.host}:{self.sip.bound_port}",
            http=self.http.url if self.http is not None else None,
            backend=self.endpoint.describe(),
            transport=self.endpoint.transport,
            max_calls=self.settings.sip.max_calls,
            outbound_api=self.http is not None and self.settings.outbound.api,
            event_loop=loop_kind(asyncio.get_running_loop()),
        )
        sip = self.settings.sip
        log.info(
            "sip_callers",
            allow_from=list(sip.allow_from),
            accounts=[account.name for account in sip.accounts],
            peers=[peer.name for peer in sip.peers],
            routes=len(self.settings.routes),
        )
        if sip.host not in ("127.0.0.1", "::1", "localhost") and (
            self.gatekeeper.only_this_machine(self.settings)
        ):
            # The safe default, but a surprise on a public address: say it once, loudly.
            log.warning(
                "sip_callers_loopback_only",
                detail="only this machine may call: set sip.allow_from, [[sip.accounts]] "
                "or [[sip.peers]] to take calls from elsewhere",
            )
        for warning in configuration_warnings(self.settings, self.endpoint):
            log.warning("config_deprecated", detail=warning)
        if self.local_server is not None:
            # Models load in a background thread while calls are already answered (a
            # call's first reply waits for the model it needs); not before SIP is up, so
            # a failed start costs nothing.
            self.local_server.warm_up()

    async def close(self) -> None:
        """Stop everything ``start`` started (whatever part of it did)."""
        self.loop_load.stop()
        for task in (self._probe_task, self._poller):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if self._retention is not None:
            self._retention.cancel()
            with suppress(asyncio.CancelledError):
                await self._retention
        if self.http is not None:
            await self.http.stop()
        await self.sip.shutdown()
        await self.record_store.close()
        if self.webhook is not None:
            # Every finished call's delivery is on disk by now; the rest waits there.
            await self.webhook.close()
        if self.lookup is not None:
            await self.lookup.close()
        await self.tool_catalog.close()
        for runtime in self.profiles.values():
            await runtime.close()
        if self.local_server is not None:
            await self.local_server.stop()

    async def account_registered(self, name: str, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s``) for account ``name``'s registration: a call placed
        through a trunk right at start would otherwise race its first REGISTER."""
        state = self.registrations.accounts.get(name)
        if state is None:
            return False
        deadline = asyncio.get_running_loop().time() + timeout_s
        while state.state != REGISTERED and asyncio.get_running_loop().time() < deadline:
            if state.state == FAILED:
                break
            await asyncio.sleep(0.05)
        return state.state == REGISTERED

    def _outbound_session(
        self, call: EngineCall, facts: OutboundFacts, profile: str
    ) -> OutboundSession:
        """The session of a call ``self.outbound`` placed, counted with the process's calls
        (they share its capacity)."""
        assert self.endpoint is not None
        settings, endpoint, catalog = self.settings, self.endpoint, self.tool_catalog
        if profile:
            runtime = self.profiles[profile]
            assert runtime.endpoint is not None
            settings, endpoint, catalog = runtime.settings, runtime.endpoint, runtime.catalog
        session = OutboundSession(
            call,
            endpoint,
            settings,
            self._on_session_finished,
            tool_catalog=catalog,
            profile=profile or self.profile,
            notice=self.notice,
            record_store=self.record_store,
            observer=CallMetrics(self.metrics, placed=True),
            numbers=(uri_user(call.local_uri), facts.target),
            outbound=facts,
        )
        self.sessions[call.call_id] = session
        return session

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Refuse new calls (503) and let active ones finish, up to ``timeout_s``."""
        self.draining = True
        tasks = set(self._tasks)
        if self.outbound is not None:
            self.outbound.accepting = False
            tasks |= self.outbound.tasks
        if tasks:
            log.info("agent_draining", active_calls=len(self.sessions))
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for session in list(self.sessions.values()):
                session.end("the agent shut down")
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    def _no_room(self) -> Answer | None:
        """Why one more call, in or out, would not fit now (``sip.max_calls``, the loop's
        load); None when it would."""
        retry_after = self.settings.sip.retry_after_s
        if len(self.sessions) >= self.settings.sip.max_calls:
            return unavailable(retry_after, "at capacity", "at_capacity")
        if self.loop_load.overloaded:
            return unavailable(retry_after, "the event loop is overloaded", "overloaded")
        return None

    def _has_room(self) -> bool:
        return self._no_room() is None

    def _admission(self) -> Answer | None:
        """The answer to a new INVITE (or OPTIONS) now: None while calls are taken."""
        retry_after = self.settings.sip.retry_after_s
        if self.draining:
            return unavailable(retry_after, "draining", "draining")
        if not self.inbound:
            return unavailable(retry_after, "placing calls only", "outbound_only")
        return self._no_room()

    def _registration_changed(self, account: AccountState) -> None:
        self.metrics.registration_state(account.settings.name, account.state == REGISTERED)

    def _sip_up(self) -> bool:
        return self._poller is not None and not self._poller.done()

    def _backend_reachable(self) -> bool:
        return self._probe is not None and self._probe.reachable is True

    def _on_incoming(self, call: EngineCall) -> None:
        refusal = self._admission()
        if refusal is not None:
            # The request gate refuses these before a call slot is taken; this is for an
            # INVITE that got past it (a gate disabled by a layout mismatch).
            log.warning(
                "call_rejected",
                call_id=call.call_id,
                sip_call_id=call.sip_call_id,
                reason=refusal.why,
                active_calls=len(self.sessions),
            )
            self.metrics.call_rejected(refusal)
            call.reject(refusal.code, refusal.reason, self.settings.sip.retry_after_s)
            return
        assert self.endpoint is not None
        route = self.gatekeeper.routes.take(call.sip_call_id)
        settings, endpoint, catalog = self.settings, self.endpoint, self.tool_catalog
        if route is not None and route.profile:
            runtime = self.profiles[route.profile]
            assert runtime.endpoint is not None
            settings, endpoint, catalog = runtime.settings, runtime.endpoint, runtime.catalog
        session = CallSession(
            call,
            endpoint,
            settings,
            self._on_session_finished,
            tool_catalog=catalog,
            lookup=self.lookup,
            profile=route.profile if route is not None and route.profile else self.profile,
            notice=self.notice,
            record_store=self.record_store,
            observer=CallMetrics(self.metrics),
            numbers=(route.caller, route.dialed) if route is not None else None,
            profiles=self.profiles,
            route_profile=route.profile if route is not None else "",
        )
        if route is not None:
            session.log.info(
                "call_routed",
                profile=route.profile or "(base)",
                dialed=route.dialed,
                caller=route.caller,
                account=route.account,
            )
        self.sessions[call.call_id] = session
        task = asyncio.get_running_loop().create_task(session.run(), name=f"call-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_session_finished(self, session: CallSession) -> None:
        self.sessions.pop(session.call_id, None)
        if isinstance(session, OutboundSession) and session.outcome is not None:
            self.metrics.outbound_call(session.outcome)
        if self.webhook is not None and session.record is not None:
            # Answered calls only (those with a transcript): a call refused or cancelled while
            # ringing is no conversation to report, and scanners would flood the receiver.
            delivery_id = new_call_id()
            body = call_ended_body(delivery_id, session.record, session.records.lines)
            self.webhook.submit(delivery_id, body, session.call_id)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` (drain); a second signal exits at once."""
    loop = asyncio.get_running_loop()

    def _handle(signum: int) -> None:
        if stop.is_set():
            # PJSIP cannot be torn down from here; exit without running destructors.
            os._exit(128 + signum)
        log.info("agent_stopping", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _handle, signum)
