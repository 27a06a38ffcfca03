"""The SIP engine interface: what the agent needs of a SIP stack, whichever it is.

An engine answers and rejects calls, moves 20 ms PCM16 frames both ways, sends and reports
DTMF, holds and transfers, and reports a call's events to its listener; the request policy
(``agent.sip.request_policy``) stands in front of it. Each engine lives in one place that
alone imports its library (``agent.sip.pjsip`` for PJSUA2, ``agent.sip.baresip`` for
baresip-python); ``agent.sip.engines`` names them.

Frames are 20 ms of PCM16 at the call's rate (``on_media``'s: 8 kHz for G.711, 16 kHz for
G.722). Each engine logs one ``media_stats`` line per call as it ends: its frame counters
(``frames_in``, ``frames_out``, ``inbound_dropped``, the playout's) and the call's RTP
statistics (``rx_packets``, ``rx_lost``, ``rx_jitter_ms_mean``, ...: the call record's names).

Threads: every method here, and every listener callback, runs on the event loop's thread.
The engine's media thread (if it has one) touches only the frame source given to
``play_from`` (thread-safe, see ``agent.audio.playout``) and its own frame queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from agent.audio.pcm import frame_bytes
from agent.sip.request_policy import Admission, CallRefused


class SipCommandError(Exception):
    """A SIP command (transfer, DTMF) could not be carried out; ``str()`` says why."""


#: Our hold's (or resume's) re-INVITE unanswered this long failed.
HOLD_ANSWER_TIMEOUT_S = 5.0


async def reinvite_answered(answer: asyncio.Future[None], verb: str) -> None:
    """Wait for the far end's answer to our ``verb`` (hold, resume) re-INVITE, which the
    engine resolves (or fails with ``SipCommandError``); ``SipCommandError`` when none comes
    within ``HOLD_ANSWER_TIMEOUT_S``."""
    try:
        async with asyncio.timeout(HOLD_ANSWER_TIMEOUT_S):
            await answer
    except TimeoutError:
        raise SipCommandError(
            f"no answer to the {verb} re-INVITE within {HOLD_ANSWER_TIMEOUT_S:g} s"
        ) from None


class DialError(SipCommandError):
    """An outbound call could not be started: no INVITE was sent (a URI the stack cannot
    take, an unknown account, no route to the host); ``str()`` says why."""


class FrameSource(Protocol):
    @property
    def flushes(self) -> int:
        """Bumped each time queued audio is dropped (barge-in): an engine that keeps frames
        of its own buffered ahead of the wire drops those too."""
        ...

    def pull(self) -> bytes:
        """Exactly one 20 ms frame of PCM16 at the call's rate; silence when nothing plays."""
        ...


class SilenceSource:
    """The frame source of a call nothing plays into yet (before media, after the end)."""

    flushes = 0

    def __init__(self, rate: int) -> None:
        self._frame = bytes(frame_bytes(rate))

    def pull(self) -> bytes:
        return self._frame


class CallListener(Protocol):
    """What a call reports, on the loop thread."""

    def on_media(self, codec: str, rate: int) -> None:
        """Audio is flowing in ``codec`` (SIP name, e.g. PCMU) at ``rate`` Hz."""
        ...

    def on_confirmed(self) -> None:
        """The call is established: the caller's ACK for our 200 arrived, or (a call we
        placed) the callee's 200 came and we acknowledged it."""
        ...

    def on_progress(self, code: int, reason: str) -> None:
        """A call we placed rings (180) or has early media (183); never for a call we take.
        Early media is the network's (a ringback, an announcement), not the callee's."""
        ...

    def on_frames(self) -> None:
        """Caller frames are waiting (``take_frames``); once per 20 ms media tick."""
        ...

    def on_dtmf(self, digit: str, method: str) -> None: ...

    def on_hold(self, held: bool) -> None:
        """The far end put the call on hold (True: a re-INVITE with sendonly or inactive)
        or resumed it (False)."""
        ...

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None: ...

    def on_disconnected(self, code: int, reason: str) -> None:
        """The call is over (``code``: the SIP status it ended with)."""
        ...


class EngineCall(Protocol):
    """One call as the agent sees it."""

    #: The agent's own call id (a ULID) and the SIP Call-ID.
    call_id: str
    sip_call_id: str
    remote_uri: str
    local_uri: str
    #: The address the INVITE came from.
    source_ip: str
    listener: CallListener | None

    @property
    def codec(self) -> str | None:
        """The negotiated codec (SIP name), None until media is active."""
        ...

    @property
    def disconnected(self) -> bool: ...

    @property
    def far_end_responded(self) -> bool:
        """A call we placed: whether any SIP response of the far end reached us (False at
        the end means the network failed: nothing answered, not even a refusal). Always
        True for a call we took."""
        ...

    def ring(self) -> None:
        """180 Ringing."""
        ...

    def answer(self) -> None:
        """200 OK."""
        ...

    def reject(self, code: int, reason: str, retry_after_s: int | None = None) -> None:
        """A final error response to the unanswered INVITE (e.g. 503 with Retry-After)."""
        ...

    def hang_up(self) -> None:
        """BYE an answered call (603 an unanswered one); harmless when already ended."""
        ...

    def transfer(self, uri: str) -> None:
        """Blind transfer (REFER); progress comes to ``on_transfer_status``.

        Raises ``SipCommandError`` when it cannot be sent."""
        ...

    async def hold(self) -> None:
        """Hold the call ourselves: a re-INVITE with a=sendonly (our audio, the music on
        hold, still reaches the far end); returns once the far end answered it.

        Raises ``SipCommandError`` when it cannot be sent or is refused."""
        ...

    async def resume(self) -> None:
        """Take the call off our hold: a re-INVITE with a=sendrecv; returns once answered.

        Raises ``SipCommandError`` when it cannot be sent or is refused."""
        ...

    def send_dtmf(self, digits: str) -> None:
        """RFC 4733 telephone-events; raises ``SipCommandError`` when they cannot be sent."""
        ...

    def take_frames(self) -> list[bytes]:
        """The caller's frames received since the last call, oldest first."""
        ...

    def play_from(self, source: FrameSource) -> None:
        """Where the agent's frames come from from now on."""
        ...

    def received_rtp_packets(self) -> int | None:
        """RTP packets received so far; None while none is expected (no audio, or held)."""
        ...

    def rtp_stats(self) -> dict[str, float | int]:
        """The call's RTP quality so far, or at its end once it ended: packets received and
        lost, jitter, what the far end reported of ours; empty when no audio flowed."""
        ...


#: The engine calls this for each INVITE it let through (on the loop thread).
IncomingCall = Callable[[EngineCall], None]


class SipEngine(Protocol):
    """One SIP stack for this process. ``start``, then ``run`` on the loop until cancelled,
    then ``shutdown``."""

    #: The UDP port SIP is bound to (meaningful after ``start``).
    bound_port: int
    #: Whether the event loop thread paces the calls' audio, so that ``audio.loop_nice``
    #: is for it (``agent.observe.loop_priority``).
    loop_paces_audio: bool

    async def start(self) -> None:
        """Bind the transport and start the stack; raises ``EngineStartError``."""
        ...

    async def run(self) -> None:
        """Drive the stack (and its calls' media ticks) until cancelled."""
        ...

    async def shutdown(self) -> None:
        """End every call and release the stack."""
        ...

    async def dial(
        self,
        uri: str,
        listener: CallListener,
        *,
        account: str = "",
        from_user: str = "",
    ) -> EngineCall:
        """Place a call to the SIP URI ``uri``, through the ``[[sip.accounts]]`` account
        ``account`` ("" = the engine's own identity, ``sip.user``), From ``from_user`` ("" =
        the account's user). ``listener`` gets every event of the call from the first one on:
        ``on_progress``, then ``on_media`` and ``on_confirmed`` once answered, or
        ``on_disconnected`` with the final status (a 486, a 603, the 487 of our CANCEL...).
        ``hang_up`` before the answer CANCELs. Raises ``DialError`` when no INVITE was sent.
        """
        ...


class EngineStartError(Exception):
    """The stack could not start (a port in use, a bad address): one line, safe to show."""


EngineFactory = Callable[[object, IncomingCall, Admission, CallRefused | None], SipEngine]
