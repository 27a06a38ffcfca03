"""``[[sip.accounts]]`` on baresip: one registering ``baresip.UserAgent`` each.

baresip registers when told to (``BP_CMD_UA_REGISTER``) and refreshes at 90 % of the lifetime
the registrar granted (libre's ``sipreg``). Every outcome, first attempt or refresh, arrives
as a ``REGISTER_OK`` / ``REGISTER_FAIL`` stack event of that user agent and is reported to
``agent.sip.registration.Registrations``; after a failure the account registers again on
its backoff, from the loop (libre's own retry waits 30-60 s, longer each time; each of our
attempts replaces libre's client and so restarts its timer). Shutdown unregisters and waits
(boundedly) for the registrar's answer before the runtime goes.

Each account's user agent answers the calls its registrar delivers to its Contact (baresip
picks the user agent by the Request-URI's user, which the registrar set to that Contact's);
the request gate has screened and routed them like every other INVITE, by where they came
from. The user agent carries the account's SDES-SRTP policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

import baresip
import structlog
from baresip import _native as _baresip_native
from baresip.errors import split_status

from agent.config import AccountSettings
from agent.sip.baresip import native
from agent.sip.engine import EngineStartError
from agent.sip.registration import (
    REGISTERED,
    Registrations,
    failure_kind,
    registrar_host,
    resolve,
)

log = structlog.get_logger("sip")

#: How long shutdown waits for the registrars to confirm the unregistrations.
UNREGISTER_WAIT_S = 2.0
#: sip.srtp / an account's srtp -> the account's ``mediaenc`` parameter.
MEDIAENC = {"off": (), "optional": ("mediaenc=srtp",), "mandatory": ("mediaenc=srtp-mand",)}
_POLL_S = 0.02


def registrar_domain(uri: str) -> str:
    """The account's domain (host[:port]) for a registrar URI: baresip registers to it."""
    host, port = registrar_host(uri)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def account_aor(
    account: AccountSettings,
    password: str,
    codecs: tuple[str, ...],
    srtp: str,
    media_params: tuple[str, ...] = (),
) -> str:
    """The address-of-record line of ``account``'s user agent (holds the password: never
    log it). Raises ``ValueError`` for what baresip's account parser cannot carry."""
    domain = registrar_domain(account.registrar)
    sips = account.registrar.startswith("sips:")
    aor = baresip.Account(
        user=account.username,
        domain=domain,
        # libre sends no request to a sips: URI itself (ENOSYS): a sips: registrar is
        # reached through a sip: route over TLS to the same place, the AOR staying sips:.
        registrar=f"sip:{domain};transport=tls" if sips else None,
        password=password,
        reg_interval=account.expires_s,
        transport=account.transport,  # type: ignore[arg-type]  # validated by agent.config
        audio_codecs=codecs,
        dtmf_mode="rtpevent",
        # No video codecs: see agent.sip.baresip.stack_config.
        extra_params=("video_codecs", *MEDIAENC[account.srtp or srtp], *media_params),
    ).aor()
    if sips:
        aor = aor.replace("<sip:", "<sips:", 1)
    return aor


def failure(account: AccountSettings, text: str) -> tuple[str, int, str]:
    """(kind, status, reason) of a ``REGISTER_FAIL`` event's text: a status line such as
    "403 Forbidden", or the error of a request that got no response ("Connection timed out
    [110]")."""
    code, reason = split_status(text)
    reason = reason or text or "no reason given"
    kind = failure_kind(code or 0, reason)
    if kind == "error" and not code and account.transport == "tls" and "protocol" in text.lower():
        # libre reports a failed TLS handshake (certificate not verified, say) as EPROTO.
        kind = "TLS"
        reason = f"handshake failed: {reason}"
    return kind, code or 0, reason


class _Agent:
    """One account's user agent: the binding's, and the native ``struct ua *`` (re thread
    only)."""

    def __init__(self, agent: baresip.UserAgent, native_ua: Any) -> None:
        self.agent = agent
        self.native = native_ua


class BaresipAccounts:
    """The registering accounts of one baresip engine (loop thread only)."""

    def __init__(
        self,
        registrations: Registrations,
        runtime: baresip.Runtime,
        executor: native.ReThreadExecutor,
        codecs: tuple[str, ...],
        srtp: str,
        on_incoming: Callable[[baresip.Call], None],
        media_params: tuple[str, ...] = (),
    ) -> None:
        self.registrations = registrations
        self._media_params = media_params
        self._runtime = runtime
        self._executor = executor
        self._codecs = codecs
        self._srtp = srtp
        self._on_incoming = on_incoming
        self._agents: dict[str, _Agent] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        #: Registration outcomes seen so far, by account.
        self._outcomes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def create(self) -> dict[str, str]:
        """A user agent per account (none registers yet); their Contact users, each to the
        account's user name. Raises ``EngineStartError`` for an account baresip refuses."""
        contacts: dict[str, str] = {}
        for name, state in self.registrations.accounts.items():
            settings = state.settings
            try:
                aor = account_aor(
                    settings, state.password, self._codecs, self._srtp, self._media_params
                )
            except ValueError as exc:
                raise EngineStartError(
                    f"sip.accounts {name!r}: the baresip engine cannot use it: {exc}"
                ) from None
            try:
                agent = await baresip.UserAgent.create(self._runtime, aor, transfer_policy="reject")
            except baresip.BaresipError as exc:
                raise EngineStartError(f"sip.accounts {name!r}: {exc}") from None
            native_ua, contact_user = await self._executor.run(native.newest_agent)
            contacts[contact_user] = settings.username
            agent.on_incoming(self._on_incoming)
            agent.on(lambda event, name=name: self._on_event(name, event))
            self._agents[name] = _Agent(agent, native_ua)
        return contacts

    def agent(self, name: str) -> tuple[baresip.UserAgent, Any, str, str] | None:
        """Account ``name``'s user agent, its ``struct ua *``, and the user and domain its
        calls come From; None when there is no such account."""
        found = self._agents.get(name)
        if found is None:
            return None
        settings = self.registrations.accounts[name].settings
        return found.agent, found.native, settings.username, registrar_domain(settings.registrar)

    async def start(self) -> None:
        """Resolve every registrar (for the who-may-call check), then register: each
        outcome comes later, to ``Registrations``."""
        for name in self._agents:
            await self._resolve_and_register(name)

    async def _resolve_and_register(self, name: str) -> None:
        state = self.registrations.accounts[name]
        host, _ = registrar_host(state.settings.registrar)
        addresses = await asyncio.get_running_loop().run_in_executor(None, resolve, host)
        self.registrations.registrar_resolved(name, addresses)
        if self._stopping:
            return
        if not addresses:
            # baresip would say only "no such host" (or nothing): name the cause, retry later.
            self._failed(name, "DNS", 0, f"{host} does not resolve")
            return
        await self._register(name)

    async def _register(self, name: str) -> None:
        agent = self._agents[name].agent
        before = self._outcomes.get(name, 0)
        _, payload = await self._runtime.cmd(
            _baresip_native.lib.BP_CMD_UA_REGISTER, args=str(agent.handle)
        )
        if payload is not None and self._outcomes.get(name, 0) == before:
            # Not even sent, and baresip reported nothing: a failure like any other (where it
            # did report it, as REGISTER_FAIL, that event was the failure).
            errno = int(json.loads(payload).get("errno", 0))
            reason = os.strerror(errno) if errno else payload.decode()
            self._failed(name, "error", 0, f"REGISTER could not be sent: {reason}")

    def _on_event(self, name: str, event: baresip.StackEvent) -> None:
        kind = event.event
        if kind not in (baresip.Event.REGISTER_OK, baresip.Event.REGISTER_FAIL):
            return
        self._outcomes[name] = outcome = self._outcomes.get(name, 0) + 1
        if kind is baresip.Event.REGISTER_OK:
            if self._stopping:
                self.registrations.unregistered(name)
            else:
                self._spawn(self._registered(name, outcome))
        elif kind is baresip.Event.REGISTER_FAIL:
            settings = self.registrations.accounts[name].settings
            failed_kind, code, reason = failure(settings, event.text or "")
            if self._stopping:
                log.warning("sip_unregister_failed", account=name, reason=reason)
                self.registrations.unregistered(name)
            else:
                self._failed(name, failed_kind, code, reason)

    async def _registered(self, name: str, outcome: int) -> None:
        ua = self._agents[name].native
        granted = await self._executor.run(lambda: native.registration_expires(ua))
        # Unless a later outcome (a failed refresh) came meanwhile: that one stands.
        if not self._stopping and self._outcomes[name] == outcome:
            self.registrations.registered(
                name, granted or self.registrations.accounts[name].settings.expires_s
            )

    def _failed(self, name: str, kind: str, code: int, reason: str) -> None:
        delay = self.registrations.failed(name, kind, code, reason)
        previous = self._retries.pop(name, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._retries[name] = loop.call_later(delay, self._retry, name)

    def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        if not self._stopping:
            self._spawn(self._resolve_and_register(name))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged(self, work: Any) -> None:
        try:
            await work
        except baresip.BaresipError as exc:
            log.warning("sip_registration_command_failed", reason=str(exc)[:200])

    async def unregister(self, timeout_s: float = UNREGISTER_WAIT_S) -> None:
        """Unregister every registered account; wait (at most ``timeout_s``) for the
        registrars' answers."""
        self._stopping = True
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        waiting = [
            name for name in self._agents if self.registrations.accounts[name].state == REGISTERED
        ]
        for name in waiting:
            try:
                await self._runtime.cmd(
                    _baresip_native.lib.BP_CMD_UA_UNREGISTER,
                    args=str(self._agents[name].agent.handle),
                )
            except baresip.BaresipError as exc:
                log.warning("sip_unregister_failed", account=name, reason=str(exc)[:200])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and any(
            self.registrations.accounts[name].state == REGISTERED for name in waiting
        ):
            await asyncio.sleep(_POLL_S)
