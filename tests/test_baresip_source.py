"""The baresip engine's own audio source without a network: when it trusts the stack's
``struct audio``, what it sends for each frame, and how a call's audio follows the stack
restarting its source.

A layout read wrongly would send someone else's stream (a crash, or one caller hearing
another); a timestamp that did not advance by the frame, or a longer ptime cut wrongly,
would be audio the far end plays garbled; a restart missed would leave the call silent
after a re-INVITE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cffi
import pytest
from baresip import AudioNotActive, AudioRestarted

from agent.sip.baresip import source
from agent.sip.baresip.source import CallFeed, StackAudio, take_transmit_thread, transmit_half

_ffi: Any = source._ffi
_real_lib: Any = source._lib


def _prm(rate: int, ptime: int = 20) -> Any:
    prm = _ffi.new("struct ausrc_prm *")
    prm.srate, prm.ch, prm.ptime, prm.fmt = rate, 1, ptime, 0
    return prm


def _stack_audio(psize: int) -> Any:
    """A ``struct audio`` as baresip 4.10 has it while a source is being allocated."""
    audio = _ffi.new("struct audio_head *")
    audio.tx.psize = psize
    audio.tx.aubuf = _ffi.cast("struct aubuf *", 0x1000)  # never read
    audio.tx.src_fmt = 0
    audio.strm = _ffi.cast("struct stream *", 0x5EED0)  # never followed by these tests
    return audio


def test_the_struct_is_trusted_only_when_it_is_this_sources_and_the_libraries_layout() -> None:
    audio = _stack_audio(320)
    slot = _ffi.addressof(audio.tx, "ausrc")
    # The stream pointer is where the library's own audio_strm() reads it: the layout
    # up to it (the whole transmit half) is the compiled one.
    assert _real_lib.audio_strm(_ffi.cast("struct audio *", audio)) == audio.strm
    assert transmit_half(audio, slot, 320) is not None

    # Another slot (the state of another source), another frame size (a G.722 call's 640
    # bytes against an 8 kHz feed), a source not started: not trusted.
    assert transmit_half(audio, _ffi.addressof(audio.tx, "as"), 320) is None
    assert transmit_half(audio, slot, 640) is None
    audio.strm = _ffi.NULL
    assert transmit_half(audio, slot, 320) is None


def test_the_stack_is_given_an_ended_thread_to_join_instead_of_starting_its_own() -> None:
    audio = _stack_audio(320)
    assert take_transmit_thread(audio)
    assert audio.tx.thr_run
    # What baresip's stop_tx does with it: the join returns at once, the thread is gone.
    libc_ffi = cffi.FFI()
    libc_ffi.cdef("int pthread_join(unsigned long thread, void **retval);")
    assert libc_ffi.dlopen(None).pthread_join(audio.tx.thr_tid, libc_ffi.NULL) == 0

    # A source restarted while the stand-in waits to be joined keeps it (one join, one id).
    audio.tx.thr_tid, audio.tx.thr_run = 1234, True
    assert take_transmit_thread(audio) and audio.tx.thr_tid == 1234


@dataclass
class FakeStack:
    """The library functions a feed calls, on fake memory: what reached the wire."""

    packets: list[tuple[bool, int, int, bytes]] = field(default_factory=list)
    events: list[tuple[bytes, bool]] = field(default_factory=list)
    locked: int = 0

    def stream_send(self, _strm: Any, _ext: bool, marker: bool, pt: int, ts: int, mb: Any) -> int:
        payload = bytes(_ffi.buffer(mb.buf + mb.pos, mb.end - mb.pos))
        self.packets.append((bool(marker), pt, ts, payload))
        return 0

    def mtx_lock(self, _mtx: Any) -> int:
        self.locked += 1
        return 0

    def mtx_unlock(self, _mtx: Any) -> int:
        self.locked -= 1
        return 0

    def telev_poll(self, _telev: Any, marker: Any, mb: Any) -> int:
        if not self.events:
            return 61  # ENODATA
        payload, starts = self.events.pop(0)
        _ffi.memmove(mb.buf + mb.end, payload, len(payload))
        mb.end += len(payload)
        marker[0] = starts
        return 0

    def stream_sdpmedia(self, _strm: Any) -> Any:
        return _ffi.NULL

    def sdp_media_rformat(self, _media: Any, _name: Any) -> Any:
        fmt = _ffi.new("struct sdp_format *")
        fmt.pt = 101
        self._keep = fmt
        return fmt

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_lib, name)


def _codec(rate: int) -> tuple[Any, list[bytes], Any]:
    """A ``struct aucodec`` at ``rate`` (RTP clock 8 kHz, as G.722's) whose encoder copies
    the samples' high bytes: one payload byte per sample, as G.711's."""
    encoded: list[bytes] = []

    def ench(_st: Any, _marker: Any, buf: Any, length: Any, _fmt: int, sampv: Any, n: int) -> int:
        samples = bytes(_ffi.buffer(sampv, 2 * n))
        encoded.append(samples)
        payload = samples[1::2]
        _ffi.memmove(buf, payload, len(payload))
        length[0] = len(payload)
        return 0

    callback = _ffi.callback(
        "int(struct auenc_state *, bool *, uint8_t *, size_t *, int, const void *, size_t)", ench
    )
    codec = _ffi.new("struct aucodec *")
    codec.srate, codec.crate, codec.ch, codec.ench = rate, 8000, 1, callback
    return codec, encoded, callback


def _feed(monkeypatch: pytest.MonkeyPatch, rate: int = 8000, ptime: int = 20) -> Any:
    stack = FakeStack()
    monkeypatch.setattr(source, "_lib", stack)
    frame = 2 * rate * ptime // 1000
    audio = _stack_audio(frame)
    codec, encoded, keep = _codec(rate)
    audio.tx.ac = codec
    audio.tx.ts_ext = 1000
    audio.tx.marker = True
    state = _ffi.new("char[1]")
    feed = CallFeed("call", state, audio, _prm(rate, 20))
    return feed, stack, audio, encoded, (codec, keep)


def test_each_frame_goes_out_encoded_at_once_with_the_next_timestamp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed, stack, audio, encoded, _keep = _feed(monkeypatch)
    first = bytes(range(256)) + bytes(64)
    assert feed.send(first) == 320
    assert feed.send(bytes([7]) * 320) == 320
    assert encoded == [first, bytes([7]) * 320]
    # The first packet carries the marker the stack set, the next does not; pt -1 is the
    # stream's negotiated payload type; the timestamp moves by 160 samples per packet.
    assert [(m, pt, ts) for m, pt, ts, _ in stack.packets] == [(True, -1, 1000), (False, -1, 1160)]
    assert stack.packets[0][3] == first[1::2]
    assert audio.tx.ts_ext == 1320 and stack.locked == 0
    # A 16 kHz frame on an 8 kHz call would be played at half speed: refused.
    assert feed.send(bytes(640)) == 0 and len(stack.packets) == 2


def test_wideband_frames_advance_the_rtp_clock_at_its_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed, stack, _audio, _encoded, _keep = _feed(monkeypatch, rate=16000)
    for _ in range(3):
        assert feed.send(bytes(640)) == 640
    # G.722: 320 samples a packet at 16 kHz, 160 ticks of its 8 kHz RTP clock (RFC 3551).
    assert [ts for _, _, ts, _ in stack.packets] == [1000, 1160, 1320]


def test_a_longer_ptime_is_sent_in_packets_of_its_length_and_a_barge_in_restarts_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed, stack, audio, encoded, _keep = _feed(monkeypatch)
    audio.tx.psize = 640  # the far end asked for a=ptime:40
    frames = [bytes([n]) * 320 for n in range(1, 6)]
    feed.send(frames[0])
    assert not stack.packets
    feed.send(frames[1])
    assert encoded == [frames[0] + frames[1]]
    feed.send(frames[2])
    feed.drop_pending()  # barge-in: the half packet of the old reply is not sent
    feed.send(frames[3])
    feed.send(frames[4])
    assert encoded[1:] == [frames[3] + frames[4]]
    assert [ts for _, _, ts, _ in stack.packets] == [1000, 1320]


def test_a_queued_telephone_event_goes_out_on_the_next_frame_with_its_payload_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed, stack, audio, _encoded, _keep = _feed(monkeypatch)
    feed.send(bytes(320))
    stack.events.append((b"\x05\x0a\x00\xa0", True))  # digit 5's first packet
    feed.send(bytes(320))  # nobody said digits were coming: not polled
    assert len(stack.packets) == 2
    feed.send(bytes(320), poll_events=True)
    assert stack.packets[-1] == (True, 101, 1480, b"\x05\x0a\x00\xa0")
    # The event's later packets come while it is on, asked or not; then polling stops.
    stack.events.append((b"\x05\x8a\x03\x20", False))  # its end
    feed.send(bytes(320))
    assert stack.packets[-1] == (False, 101, 1480, b"\x05\x8a\x03\x20")
    feed.send(bytes(320))
    polled = len(stack.packets)
    stack.events.append((b"late", False))
    feed.send(bytes(320))
    assert len(stack.packets) == polled + 1  # the audio packet alone
    assert audio.tx.ts_tel == 1480
    assert StackAudio(None, "call").stats() == {"tx_event_packets": 0, "tx_send_errors": 0}
    assert feed.events_sent == 2


def test_a_released_feed_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    feed, stack, _audio, _encoded, _keep = _feed(monkeypatch)
    assert feed.ready()
    feed.close()
    assert not feed.ready()
    assert feed.send(bytes(320)) == 0 and not stack.packets


def test_an_untrusted_struct_sends_nothing() -> None:
    feed = CallFeed("call", _ffi.new("char[1]"), None, _prm(8000))
    assert not feed.ready() and feed.send(bytes(320)) == 0


class _Feed:
    """What ``StackAudio`` uses of a ``CallFeed``."""

    def __init__(self) -> None:
        self.claimed = False
        self.frames: list[bytes] = []
        self.kept = 0
        self.events_sent = 0
        self.send_errors = 0

    def ready(self) -> bool:
        return True

    def send(self, frame: bytes, poll_events: bool = False) -> int:
        self.frames.append(frame)
        return len(frame)

    def keep_sending(self) -> None:
        self.kept += 1

    def drop_pending(self) -> None:
        pass


def test_a_restarted_source_is_told_once_and_sent_on_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _Feed(), _Feed()
    first.events_sent = 4
    feeds: dict[str, Any] = {"call-1": first}
    monkeypatch.setattr(source, "feeds", feeds)
    audio = StackAudio(None, "call-1")
    assert audio.ready()
    assert audio.write(b"a" * 320) == 320 and first.claimed

    feeds["call-1"] = second  # a re-INVITE changed the codec: the stack's new source
    with pytest.raises(AudioRestarted):
        audio.ready()
    assert audio.write(b"b" * 320) == 320
    assert (first.frames, second.frames) == ([b"a" * 320], [b"b" * 320])
    second.events_sent = 2
    assert audio.stats()["tx_event_packets"] == 6  # the first feed's count is kept

    del feeds["call-1"]  # released at the call's end: not a restart
    with pytest.raises(AudioNotActive):
        audio.write(b"c" * 320)
    with pytest.raises(AudioNotActive):
        audio.ready()


def test_feeds_no_pump_sends_on_yet_keep_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    ringing, talking = _Feed(), _Feed()
    talking.claimed = True
    monkeypatch.setattr(source, "feeds", {"early": ringing, "up": talking})
    for _ in range(3):
        source.keep_idle_feeds_sending()
    assert (ringing.kept, talking.kept) == (3, 0)
