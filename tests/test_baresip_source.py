"""The baresip engine's own audio source without a network: when it trusts the stack's
transmit half, and how a call's audio follows the stack restarting its source.

A layout read wrongly would hand the media clock someone else's buffer (a crash, or one
caller hearing another); a restart missed would leave the call silent after a re-INVITE."""

from __future__ import annotations

from typing import Any

import pytest
from baresip import AudioNotActive, AudioRestarted
from structlog.testing import capture_logs

from agent.sip.baresip import source
from agent.sip.baresip.source import CallFeed, StackAudio

_ffi: Any = source._ffi


def _prm(rate: int) -> Any:
    prm = _ffi.new("struct ausrc_prm *")
    prm.srate, prm.ch, prm.ptime, prm.fmt = rate, 1, 20, 0
    return prm


def _stack_audio(layout: str, state: Any, psize: int) -> Any:
    """A ``struct audio`` as baresip 4.10 leaves it once a source has started."""
    audio = _ffi.new(layout)
    audio.tx.ausrc = _ffi.cast("struct ausrc_st *", state)
    audio.tx.psize = psize
    audio.tx.aubuf = _ffi.cast("struct aubuf *", 0x1000)  # never read by these tests
    audio.tx.src_fmt = 0
    return audio


@pytest.mark.parametrize("layout", ["struct audio_head *", "struct audio_head_magic *"])
def test_the_transmit_half_is_trusted_only_when_it_names_this_feed(layout: str) -> None:
    state = _ffi.new("char[1]")
    audio = _stack_audio(layout, state, 320)
    feed = CallFeed("call", state, audio, _ffi.NULL, _ffi.NULL, _prm(8000))
    assert feed.frame_bytes == 320
    assert feed.ready()

    # Another source's state, or another frame size (a G.722 call's 640 bytes against an
    # 8 kHz feed): nothing is written, read or flushed.
    other = _ffi.new("char[1]")
    stranger = CallFeed("call", other, audio, _ffi.NULL, _ffi.NULL, _prm(8000))
    assert not stranger.ready()
    assert stranger.write(bytes(320)) == 0
    assert stranger.buffered() == 0 and stranger.underruns() == 0
    wideband = CallFeed("call", state, audio, _ffi.NULL, _ffi.NULL, _prm(16000))
    assert not wideband.ready()


def test_a_write_hands_the_stack_a_copy_of_the_frame_of_the_calls_size() -> None:
    state = _ffi.new("char[1]")
    audio = _stack_audio("struct audio_head *", state, 320)
    handed: list[tuple[bytes, int, int, int]] = []

    def read_handler(af: Any, _arg: Any) -> None:
        samples = bytes(_ffi.buffer(af.sampv, 2 * af.sampc))
        handed.append((samples, af.sampc, af.srate, af.ch))
        _ffi.memmove(af.sampv, bytes(2 * af.sampc), 2 * af.sampc)  # a muted source, in place

    handler = _ffi.callback("void(struct auframe *, void *)", read_handler)
    feed = CallFeed("call", state, audio, handler, _ffi.NULL, _prm(8000))
    frame = bytes(range(256)) + bytes(64)
    assert feed.write(frame) == 320
    assert handed == [(frame, 160, 8000, 1)]
    assert frame == bytes(range(256)) + bytes(64)  # the caller's bytes stay as they were
    # A 16 kHz frame on an 8 kHz call would be played at half speed: refused.
    assert feed.write(bytes(640)) == 0 and len(handed) == 1


def test_a_layout_that_never_checks_out_is_told_once_with_the_call() -> None:
    audio = _stack_audio("struct audio_head *", _ffi.new("char[1]"), 320)
    feed = CallFeed("call-7", _ffi.new("char[1]"), audio, _ffi.NULL, _ffi.NULL, _prm(8000))
    with capture_logs() as logs:
        for _ in range(3 * source._VALIDATE_TRIES):
            assert not feed.ready()
    told = [line for line in logs if line["event"] == "baresip_audio_source_unchecked"]
    assert len(told) == 1 and told[0]["sip_call_id"] == "call-7"


def test_a_released_feed_takes_nothing() -> None:
    state = _ffi.new("char[1]")
    audio = _stack_audio("struct audio_head *", state, 320)
    feed = CallFeed("call", state, audio, _ffi.NULL, _ffi.NULL, _prm(8000))
    assert feed.ready()
    feed.close()
    assert feed.write(bytes(320)) == 0
    assert feed.buffered() == 0


class _Feed:
    """What ``StackAudio`` uses of a ``CallFeed``."""

    def __init__(self) -> None:
        self.claimed = False
        self.frames: list[bytes] = []
        self.kept = 0

    def ready(self) -> bool:
        return True

    def write(self, frame: bytes) -> int:
        self.frames.append(frame)
        return len(frame)

    def buffered(self) -> int:
        return 320 * len(self.frames)

    def keep_sending(self) -> None:
        self.kept += 1

    def flush(self) -> None:
        self.frames.clear()

    def underruns(self) -> int:
        return 0


def test_a_restarted_source_is_told_once_and_written_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _Feed(), _Feed()
    feeds: dict[str, Any] = {"call-1": first}
    monkeypatch.setattr(source, "feeds", feeds)
    audio = StackAudio(None, "call-1")
    assert audio.info().tx_ready
    assert audio.write(b"a" * 320) == 320 and first.claimed

    feeds["call-1"] = second  # a re-INVITE changed the codec: the stack's new source
    with pytest.raises(AudioRestarted):
        audio.info()
    assert audio.write(b"b" * 320) == 320
    assert (first.frames, second.frames) == ([b"a" * 320], [b"b" * 320])

    del feeds["call-1"]  # released at the call's end: not a restart
    with pytest.raises(AudioNotActive):
        audio.write(b"c" * 320)
    with pytest.raises(AudioNotActive):
        audio.info()


def test_feeds_no_pump_writes_yet_keep_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    ringing, talking = _Feed(), _Feed()
    talking.claimed = True
    monkeypatch.setattr(source, "feeds", {"early": ringing, "up": talking})
    for _ in range(3):
        source.keep_idle_feeds_sending()
    assert (ringing.kept, talking.kept) == (3, 0)
