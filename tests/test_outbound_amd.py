"""Answering-machine detection on callee audio from testbed.callee_audio: a person's "hello?",
a voicemail greeting and its beep, silence and line noise, at 8 and 16 kHz, fed frame by
frame as the call's bridge feeds it. Verdicts, when they come, and where the beep was heard."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from agent.local.synthetic_voice import synthesize_voice
from agent.outbound.amd import (
    BY_BEEP,
    BY_SILENCE,
    BY_TIMEOUT,
    HUMAN,
    LINE_GAP_MS,
    MACHINE,
    UNKNOWN,
    AmdEvent,
    AnsweringMachineDetector,
    GreetingEnded,
    Verdict,
)
from agent.outbound.amd_settings import AmdSettings
from testbed import callee_audio
from testbed.callee_audio import CalleeAudio

RATES = pytest.mark.parametrize("rate", [8000, 16000])
SETTINGS = AmdSettings()


def _run(audio: CalleeAudio, settings: AmdSettings = SETTINGS) -> list[AmdEvent]:
    """The audio, 20 ms at a time with a tick after each frame, until the detector is done."""
    detector = AnsweringMachineDetector(settings, audio.rate)
    events: list[AmdEvent] = []
    for index, frame in enumerate(callee_audio.frames(audio)):
        events += detector.frame(frame)
        events += detector.tick((index + 1) * 20)
        if detector.done:
            break
    assert detector.done, f"{audio.name}: no decision in {audio.ms} ms"
    return events


def _verdict(events: list[AmdEvent]) -> Verdict:
    verdicts = [e for e in events if isinstance(e, Verdict)]
    assert len(verdicts) == 1
    return verdicts[0]


def _end(events: list[AmdEvent]) -> GreetingEnded:
    ends = [e for e in events if isinstance(e, GreetingEnded)]
    assert len(ends) == 1 and events[-1] is ends[0]
    return ends[0]


@RATES
@pytest.mark.parametrize("noise_dbfs", [None, -45.0, -30.0])
def test_hello_then_a_pause_is_a_person_soon_after_the_pause(
    rate: int, noise_dbfs: float | None
) -> None:
    audio = callee_audio.hello(rate)
    if noise_dbfs is not None:
        audio = callee_audio.noisy(audio, noise_dbfs)
    events = _run(audio)
    verdict = _verdict(events)
    assert verdict.verdict == HUMAN and len(events) == 1
    # "hello?" ends at 900 ms; the verdict takes the 800 ms of silence and no more.
    hello_end = 300 + 600
    assert hello_end + SETTINGS.human_silence_ms <= verdict.decided_ms <= hello_end + 900


@RATES
@pytest.mark.parametrize("noise_dbfs", [None, -45.0, -30.0])
def test_a_long_greeting_is_a_machine_and_its_beep_is_found_where_it_was(
    rate: int, noise_dbfs: float | None
) -> None:
    audio = callee_audio.voicemail(rate)
    if noise_dbfs is not None:
        audio = callee_audio.noisy(audio, noise_dbfs)
    assert audio.speech_ms is not None and audio.beep_ms is not None
    assert audio.beep_end_ms is not None
    events = _run(audio)
    verdict = _verdict(events)
    assert verdict.verdict == MACHINE
    # Decided once the greeting ran 2.5 s, long before its 6 s are over.
    start = audio.speech_ms
    assert start + SETTINGS.machine_speech_ms <= verdict.decided_ms <= start + 2800
    end = _end(events)
    assert end.how == BY_BEEP
    assert end.beep_ms is not None and abs(end.beep_ms - audio.beep_ms) <= 100
    assert end.beep_hz is not None and abs(end.beep_hz - 1000) <= 25
    # The message may start as the tone stops: the recording begins there.
    assert abs(end.at_ms - audio.beep_end_ms) <= 100


@RATES
def test_a_greeting_without_a_beep_ends_on_the_silence_after_it(rate: int) -> None:
    audio = callee_audio.voicemail(rate, beep_len_ms=0)
    events = _run(audio)
    assert _verdict(events).verdict == MACHINE
    end = _end(events)
    greeting_end = 200 + 6000
    assert end.how == BY_SILENCE and end.beep_ms is None
    assert abs(end.at_ms - (greeting_end + SETTINGS.end_silence_ms)) <= 100


@RATES
def test_a_beep_after_a_short_greeting_is_a_machine_too(rate: int) -> None:
    audio = callee_audio.voicemail(rate, greeting_ms=1200, pause_ms=300)
    assert audio.beep_ms is not None
    events = _run(audio)
    verdict = _verdict(events)
    assert verdict.verdict == MACHINE and verdict.reason == "beep"
    assert verdict.decided_ms <= audio.beep_ms + SETTINGS.beep_min_ms + 60
    assert _end(events).how == BY_BEEP


@RATES
@pytest.mark.parametrize("case", ["silence", "noise"])
def test_nothing_but_silence_or_line_noise_is_unknown_at_the_time_limit(
    rate: int, case: str
) -> None:
    audio = callee_audio.silence(rate) if case == "silence" else callee_audio.noise(rate)
    events = _run(audio)
    verdict = _verdict(events)
    assert verdict.verdict == UNKNOWN and verdict.decided_ms == SETTINGS.max_detect_ms


def test_a_line_that_stops_sending_audio_still_gets_a_verdict_in_time() -> None:
    """Silence suppression: after "hello?" the callee sends nothing; only time passes."""
    audio = callee_audio.hello(8000, tail_ms=0)
    detector = AnsweringMachineDetector(SETTINGS, 8000)
    events: list[AmdEvent] = []
    for frame in callee_audio.frames(audio):
        events += detector.frame(frame)
    assert not events
    now = audio.ms
    while not detector.done:
        now += 20
        events += detector.tick(now)
        assert now < 5000
    verdict = _verdict(events)
    assert verdict.verdict == HUMAN
    assert verdict.decided_ms <= audio.ms + SETTINGS.human_silence_ms + LINE_GAP_MS + 20


def test_a_greeting_that_never_ends_gives_up_waiting_at_beep_wait() -> None:
    settings = AmdSettings(beep_wait_ms=3000)
    audio = callee_audio.voicemail(8000, greeting_ms=12000, beep_len_ms=0)
    events = _run(audio, settings)
    verdict = _verdict(events)
    end = _end(events)
    assert end.how == BY_TIMEOUT and end.at_ms == verdict.decided_ms + 3000


def test_a_formant_voice_is_speech_not_a_beep() -> None:
    """The synthetic backend's voice (vowel formants up to 2.3 kHz) over and over: a machine
    that talks, never a tone."""
    voice = synthesize_voice("Hello, you have reached the voicemail of the sales office.")
    pcm8k = np.clip(soxr.resample(voice, 24000, 8000), -32768, 32767).astype("<i2")
    talk = np.concatenate([pcm8k, pcm8k, np.zeros(16000, np.int16)])
    audio = CalleeAudio("formant", talk.tobytes(), 8000, MACHINE)
    events = _run(audio)
    assert _verdict(events).verdict == MACHINE
    end = _end(events)
    assert end.how == BY_SILENCE and end.beep_ms is None


def test_audio_in_odd_pieces_decides_the_same_as_in_frames() -> None:
    audio = callee_audio.voicemail(8000)
    framed = _run(audio)
    detector = AnsweringMachineDetector(SETTINGS, 8000)
    pieced: list[AmdEvent] = []
    for start in range(0, len(audio.pcm), 114):  # 57 samples: 7.1 ms, and odd
        pieced += detector.frame(audio.pcm[start : start + 114])
    assert pieced == framed


def test_the_record_carries_the_verdict_and_the_beep() -> None:
    audio = callee_audio.voicemail(8000)
    detector = AnsweringMachineDetector(SETTINGS, 8000)
    assert detector.record is None
    for frame in callee_audio.frames(audio):
        detector.frame(frame)
    record = detector.record
    assert record is not None
    assert record["verdict"] == MACHINE and record["greeting_end"] == BY_BEEP
    assert record["beep_hz"] == 1000 and audio.beep_ms is not None
    assert abs(record["beep_ms"] - audio.beep_ms) <= 100
    assert record["decided_ms"] < record["beep_ms"] < record["greeting_end_ms"]
    # Done: more audio changes nothing.
    assert detector.frame(audio.pcm[:320]) == [] and detector.record == record


def test_a_rate_without_whole_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        AnsweringMachineDetector(SETTINGS, 11025)
