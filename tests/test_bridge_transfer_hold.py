"""The agent's own hold around a transfer, in memory: the bridge asks for the hold once its
last words were heard, plays music on hold meanwhile (the model neither hears the caller nor
is heard), sends the REFER once the hold is answered, and on a failed transfer resumes the
call, stops the music and only then tells the tool."""

from __future__ import annotations

import numpy as np

from agent.audio.hold_music import HoldMusic, MusicLoop, builtin_music
from agent.audio.levels import rms_dbfs, tone
from agent.bridge.actions import HangUp, HoldCall, ResumeCall, Transfer, TransferFinished
from agent.bridge.bridge import MUSIC_ITEM, TRANSFER_OUTCOME_MS
from agent.realtime.dialect import Dialect
from tests.test_bridge import FakeCall

URI = "sip:billing@127.0.0.1:5999"
VOICE = bytes((1500).to_bytes(2, "little", signed=True) * 160)


def _call(**config: object) -> FakeCall:
    call = FakeCall(Dialect.GA, transfer_hold=True, **config)
    call.answer()
    call.response_created("resp_1")
    call.speak("resp_1", "item_1", 200, "Transferring you now.")
    call.response_done("resp_1")
    return call


def _of(call: FakeCall, kind: type) -> list[object]:
    return [action for action in call.actions if isinstance(action, kind)]


def _appends(call: FakeCall) -> int:
    return call.kinds().count("input_audio_buffer.append")


def _caller_talks(call: FakeCall, frames: int) -> None:
    for _ in range(frames):
        call.take(call.bridge.caller_frame(VOICE, call.now))
        call.pull(1)


def _hold(call: FakeCall) -> None:
    call.take(call.bridge.transfer_when_quiet(URI, call.now))
    call.pull(20)  # the agent's last words play out, then the hold is asked for


def test_the_caller_is_held_with_music_before_the_refer_and_resumed_when_it_fails() -> None:
    call = _call()
    _hold(call)
    assert len(_of(call, HoldCall)) == 1
    assert not _of(call, Transfer)  # not before the far end answered the hold
    start = len(call.heard)
    appends = _appends(call)
    _caller_talks(call, 50)  # one second held: the caller's audio goes nowhere
    assert _appends(call) == appends
    call.take(call.bridge.agent_hold_done(True, "", call.now))
    assert [a.uri for a in _of(call, Transfer)] == [URI]  # type: ignore[attr-defined]
    call.pull(100)
    music = bytes(call.heard[start:])
    assert rms_dbfs(music) > -35  # music, not silence, for the whole hold
    assert all(rms_dbfs(music[i : i + 3200]) > -45 for i in range(0, len(music) - 3200, 3200))
    # The model talking anyway is not put through to the held caller.
    call.response_created("resp_2")
    call.speak("resp_2", "item_2", 400, "Still there?")
    assert call.bridge.playout.queued_of("item_2") == 0
    call.response_done("resp_2")
    assert not call.bridge.agent_speaking
    before = len(call.actions)
    call.take(call.bridge.transfer_status(503, "Service Unavailable", True))
    after = call.actions[before:]
    resume = next(i for i, a in enumerate(after) if isinstance(a, ResumeCall))
    finished = next(i for i, a in enumerate(after) if isinstance(a, TransferFinished))
    assert resume < finished  # off hold before the model hears of the failure
    assert call.bridge.playout.queued_of(MUSIC_ITEM) == 0
    call.pull(2)
    assert rms_dbfs(bytes(call.heard[-320:])) < -80  # the music stopped on the next frame
    _caller_talks(call, 10)
    assert _appends(call) >= appends + 10  # the model hears the caller again
    kinds = [line.get("kind") for line in call.lines]
    assert kinds.count("transfer_hold") == 1 and kinds.count("transfer_resume") == 1


def test_a_completed_transfer_hangs_up_without_resuming() -> None:
    call = _call()
    _hold(call)
    call.take(call.bridge.agent_hold_done(True, "", call.now))
    call.take(call.bridge.transfer_status(200, "OK", True))
    assert _of(call, HangUp) and not _of(call, ResumeCall)
    assert [a.status for a in _of(call, TransferFinished)] == [200]  # type: ignore[attr-defined]


def test_no_outcome_counts_as_failed_and_resumes() -> None:
    call = _call()
    _hold(call)
    call.take(call.bridge.agent_hold_done(True, "", call.now))
    deadline = call.bridge.next_deadline
    assert deadline is not None and deadline <= call.now + TRANSFER_OUTCOME_MS
    call.now += TRANSFER_OUTCOME_MS
    call.take(call.bridge.tick(call.now))
    assert _of(call, ResumeCall)
    assert [a.status for a in _of(call, TransferFinished)] == [408]  # type: ignore[attr-defined]


def test_a_refused_hold_still_transfers_and_resumes_nothing() -> None:
    call = _call()
    _hold(call)
    call.take(call.bridge.agent_hold_done(False, "488 Not Acceptable Here", call.now))
    assert _of(call, Transfer) and call.notes("agent_hold_failed")
    call.take(call.bridge.transfer_status(486, "Busy Here", True))
    assert not _of(call, ResumeCall)  # the call was never on hold
    assert call.bridge.playout.queued_of(MUSIC_ITEM) == 0


def test_without_transfer_hold_the_refer_goes_at_once() -> None:
    call = FakeCall(Dialect.GA)
    call.answer()
    call.take(call.bridge.transfer_when_quiet(URI, call.now))
    call.pull(3)
    assert _of(call, Transfer) and not _of(call, HoldCall)


def test_the_configured_music_plays_looped_at_the_call_rate() -> None:
    # A 16 kHz stereo-sourced file, mixed to mono: the caller at 8 kHz hears it resampled.
    source = tone(440, 300, 16000, -12.0) + tone(660, 300, 16000, -12.0)
    call = _call(hold_music=HoldMusic(source, 16000, "test.wav"))
    _hold(call)
    start = len(call.heard)
    call.pull(150)  # three seconds: five times round the 600 ms loop
    heard = np.frombuffer(bytes(call.heard[start:]), dtype="<i2").astype(float)
    expected = np.frombuffer(HoldMusic(source, 16000, "t").at_rate(8000), dtype="<i2")
    loop = np.tile(expected.astype(float), 7)
    # The file's loop, at some phase (the music began during the hold's first frames).
    best = max(
        float(np.dot(heard, loop[lag : lag + len(heard)]))
        / float(np.linalg.norm(heard) * np.linalg.norm(loop[lag : lag + len(heard)]))
        for lag in range(len(expected))
    )
    assert best > 0.95, best


def test_builtin_music_is_gentle_and_loops_without_a_click() -> None:
    music = builtin_music(8000)
    samples = np.frombuffer(music.pcm, dtype="<i2")
    assert -30 < rms_dbfs(music.pcm) < -22
    # The loop joins smoothly: the step across its end is no bigger than any inside it.
    steps = np.abs(np.diff(samples.astype(int)))
    assert abs(int(samples[0]) - int(samples[-1])) <= steps.max()
    assert all(rms_dbfs(music.pcm[i : i + 1600]) > -40 for i in range(0, len(music.pcm), 1600))
    loop = MusicLoop(music.pcm)
    first = loop.take(len(music.pcm) - 2)
    assert loop.take(4) == music.pcm[-2:] + music.pcm[:2]
    assert first == music.pcm[:-2]
