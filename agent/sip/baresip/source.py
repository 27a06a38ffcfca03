"""The agent's audio transmitter for baresip: the media clock encodes and sends every call's
RTP itself, with no thread per call.

baresip sends a call's audio from an ``Audio TX`` thread of its own: every 4 ms it wakes to
see whether a ptime (20 ms) is due and, if its transmit buffer (libre's ``aubuf``) holds a
frame, encodes and sends it. What fills that buffer is the audio source. The agent has a
clock already, one timer for all calls (``agent.sip.baresip.media.MediaClock``), and a
thread per call waking 250 times a second cost more than anything else the stack did: at
100 calls those threads took 2.5 ms of CPU per call-second, four fifths of it in the kernel
(``bench/results/capacity-clock-send.json``), and a frame that reached the buffer after the
thread had looked was a gap the caller heard. So the agent registers the source ``clock``,
one ``CallFeed`` per call's source instance, and sends from the clock's tick: the frame is
encoded with the call's negotiated encoder (``struct aucodec``'s ``ench``, G.711 or G.722)
and sent with ``stream_send``, which stamps sequence and SSRC and applies SRTP, exactly as
the thread's ``encode_rtp_send`` does; the RTP timestamp advances one frame per frame, so
a late tick is sent late, never lost. RFC 4733 events the stack queued (``audio_send_digit``)
are polled and sent on the same tick, as the thread's ``check_telev`` does.

The thread is never started: baresip starts it only when its ``thr.run`` flag is down after
the source's allocation, and the allocation (this module's) raises it with the id of a
thread that has already ended (one started on ``mem_deref(NULL)``, which returns at once).
baresip clears the flag and joins that id when it stops the source, as it would its own.

What this reads and writes is baresip's private ``struct audio`` (``struct autx`` of baresip
4.10, the one the pinned wheel bundles). It is trusted only when, at the allocation, the
slot the stack hands for the source state is the layout's own ``tx.ausrc``, the frame size
and sample format are the call's, and the stream pointer is the one the stack's own
``audio_strm`` returns; otherwise the stack's thread runs as it would and the call stays
silent, told once.

Threads: the stack allocates and releases a source on its ``baresip-re`` thread (callbacks
here, under the GIL); the clock sends from the event loop. Each feed's lock keeps the two
apart: the stack releases the source before it frees the encoder, stream and events the
feed uses, and the release waits for a send in progress and stops later ones.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import cffi
import structlog
from baresip import AudioNotActive, AudioRestarted
from baresip import _native as _baresip_native

from agent.sip.baresip.driver import Registration

_log = structlog.get_logger("sip")
#: The source's name in each account's ``audio_source`` (at most 15 bytes).
NAME = "clock"
#: libre's AUFMT_S16LE: the only sample format the clock writes.
_S16LE = 0
#: baresip's STREAM_PRESZ: room kept before the payload for the RTP header.
_PRESZ = 4 + 12
#: Payload room of a packet's buffer, as baresip's own transmit buffer has.
_PAYLOAD_ROOM = 4096

_ffi = cffi.FFI()
_ffi.cdef(
    """
    struct le { struct le *prev; struct le *next; struct list *list; void *data; };
    struct list { struct le *head; struct le *tail; size_t cnt; };
    struct mbuf { uint8_t *buf; size_t size; size_t pos; size_t end; };
    struct ausrc; struct ausrc_st; struct aubuf; struct call; struct ua; struct audio;
    struct auenc_state; struct stream; struct telev; struct sdp_media;
    struct auframe { int fmt; uint32_t srate; void *sampv; size_t sampc; uint64_t timestamp;
                     double level; uint16_t id; uint8_t ch; uint8_t padding[5]; };
    struct ausrc_prm { uint32_t srate; uint8_t ch; uint32_t ptime; int fmt; size_t duration; };
    /* baresip 4.10's struct aucodec (include/baresip.h) */
    struct aucodec { struct le le; const char *pt; const char *name; uint32_t srate;
                     uint32_t crate; uint8_t ch; uint8_t pch; uint32_t ptime;
                     const char *fmtp; void *encupdh;
                     int (*ench)(struct auenc_state *aes, bool *marker, uint8_t *buf,
                                 size_t *len, int fmt, const void *sampv, size_t sampc);
                     void *decupdh; void *dech; void *plch; void *fmtp_ench;
                     void *fmtp_cmph; };
    /* libre 4.10's struct sdp_format (include/re_sdp.h) */
    struct sdp_format { struct le le; char *id; char *params; char *rparams; char *name;
                        void *ench; void *cmph; void *data; bool ref; bool sup; int pt;
                        uint32_t srate; uint8_t ch; };
    struct list *baresip_ausrcl(void);
    int ausrc_register(struct ausrc **asp, struct list *ausrcl, const char *name,
                       int (*alloch)(struct ausrc_st **stp, const struct ausrc *as,
                                     struct ausrc_prm *prm, const char *device,
                                     void (*rh)(struct auframe *af, void *arg),
                                     void (*errh)(int err, const char *str, void *arg),
                                     void *arg));
    void *mem_zalloc(size_t size, void (*dh)(void *data));
    void *mem_deref(void *data);
    struct mbuf *mbuf_alloc(size_t size);
    int mtx_lock(void *mtx);
    int mtx_unlock(void *mtx);
    struct list *uag_list(void);
    struct list *ua_calls(const struct ua *ua);
    struct audio *call_audio(const struct call *call);
    const char *call_id(const struct call *call);
    struct stream *audio_strm(const struct audio *au);
    int stream_send(struct stream *s, bool ext, bool marker, int pt, uint32_t ts,
                    struct mbuf *mb);
    struct sdp_media *stream_sdpmedia(const struct stream *s);
    const struct sdp_format *sdp_media_rformat(const struct sdp_media *m, const char *name);
    int telev_poll(struct telev *t, bool *marker, struct mbuf *mb);
    extern const char telev_rtpfmt[];
    /* baresip 4.10's struct autx (src/audio.c), and the head of struct audio */
    struct autx { const struct ausrc *as; struct ausrc_st *ausrc; struct ausrc_prm prm;
                  const struct aucodec *ac; struct auenc_state *enc; struct aubuf *aubuf;
                  size_t aubuf_maxsz; bool aubuf_started; struct list filtl; void *mb;
                  char *module; char *device; void *sampv; uint32_t ptime;
                  uint64_t ts_ext; uint32_t ts_base; uint32_t ts_tel; size_t psize;
                  bool marker; bool muted; int cur_key; int src_fmt; int enc_fmt;
                  uint64_t aubuf_overrun; uint64_t aubuf_underrun;
                  unsigned long thr_tid; bool thr_run; void *mtx; };
    struct audio_head { struct autx tx; void *aur; struct stream *strm; struct telev *telev; };
    /* libc's, to give the stack a transmit thread that has already ended */
    int pthread_create(unsigned long *thread, const void *attr,
                       void *(*start)(void *), void *arg);
    """
)
_lib: Any = _ffi.dlopen(_baresip_native.__file__)
_libc: Any = _ffi.dlopen(None)
#: The stack keeps the name's pointer, not a copy: it lives as long as the module.
_NAME_TEXT = _ffi.new("char[]", NAME.encode())
#: A thread start routine of the right type that returns at once (``mem_deref(NULL)``).
_ENDS_AT_ONCE = _ffi.cast("void *(*)(void *)", _ffi.addressof(_lib, "mem_deref"))


def transmit_half(audio: Any, slot: Any, frame_bytes: int) -> Any:
    """The ``struct audio_head *`` of ``audio`` when it checks out as baresip 4.10's for a
    source whose state the stack will store at ``slot``, with frames of ``frame_bytes``;
    else None (*re thread*, during the source's allocation)."""
    head = _ffi.cast("struct audio_head *", audio)
    tx = head.tx
    if (
        _ffi.cast("uintptr_t", _ffi.addressof(tx, "ausrc")) == _ffi.cast("uintptr_t", slot)
        and tx.psize == frame_bytes
        and tx.aubuf != _ffi.NULL
        and tx.src_fmt == _S16LE
        and head.strm != _ffi.NULL
        and head.strm == _lib.audio_strm(_ffi.cast("struct audio *", audio))
    ):
        return head
    return None


class CallFeed:
    """One source instance of one call: what the clock sends goes out as the call's RTP."""

    def __init__(self, call_id: str, state: Any, head: Any, prm: Any) -> None:
        self.call_id = call_id
        self._state = state
        #: The call's ``struct audio_head *`` once it checked out, else None: nothing is sent.
        self._head = head
        self.rate = int(prm.srate)
        self.channels = int(prm.ch)
        self.frame_bytes = 2 * self.rate * self.channels * int(prm.ptime) // 1000
        self._lock = threading.Lock()
        self._closed = False
        # Samples handed to the encoder: ours to copy into, not a Python bytes object's.
        self._samples = _ffi.new("uint8_t[]", _PAYLOAD_ROOM)
        self._packet = _lib.mbuf_alloc(_PRESZ + _PAYLOAD_ROOM)
        self._event = _lib.mbuf_alloc(_PRESZ + 64)
        self._marker = _ffi.new("bool *")
        self._length = _ffi.new("size_t *")
        #: What a far end asking for a longer ptime (a=ptime:40) has of its next packet.
        self._pending = bytearray()
        self._silence = bytes(self.frame_bytes)
        self._told_encode = False
        #: Whether the last poll found a telephone event on (its packets keep coming).
        self._event_on = False
        #: Set once a call's pump sends here; until then ``keep_idle_feeds_sending`` does.
        self.claimed = False
        self.send_errors = 0
        self.events_sent = 0
        if self._packet == _ffi.NULL or self._event == _ffi.NULL:
            self._head = None

    def ready(self) -> bool:
        """Whether what is sent here goes out (loop thread)."""
        return self._head is not None and not self._closed

    def send(self, frame: bytes, poll_events: bool = False) -> int:
        """Send one frame of the call's size as the call's RTP (loop thread), and, while
        ``poll_events`` says digits may be queued or an event is on, the telephone event
        due; the bytes taken (0 once released, or for a frame of another size)."""
        with self._lock:
            head = self._head
            if head is None or self._closed or len(frame) != self.frame_bytes:
                return 0
            tx = head.tx
            packet_bytes = int(tx.psize)
            if packet_bytes == len(frame) and not self._pending:
                _ffi.memmove(self._samples, frame, packet_bytes)
                self._send_packet(head, packet_bytes // 2)
            elif 0 < packet_bytes <= _PAYLOAD_ROOM:
                pending = self._pending
                pending += frame
                while len(pending) >= packet_bytes:
                    _ffi.memmove(self._samples, bytes(pending[:packet_bytes]), packet_bytes)
                    del pending[:packet_bytes]
                    self._send_packet(head, packet_bytes // 2)
            if poll_events or self._event_on:
                self._event_on = self._send_events(head)
            return len(frame)

    def _send_packet(self, head: Any, sampc: int) -> None:
        # baresip's encode_rtp_send, for the calls this agent takes: no audio-level
        # extension (``audio_level`` is off) and no bundle (one stream per SIP call).
        tx = head.tx
        codec = tx.ac
        if codec == _ffi.NULL or codec.ench == _ffi.NULL:
            return
        packet = self._packet
        packet.pos = packet.end = _PRESZ
        marker, length = self._marker, self._length
        marker[0] = tx.marker
        length[0] = packet.size - _PRESZ
        status = codec.ench(
            tx.enc, marker, packet.buf + _PRESZ, length, _S16LE, self._samples, sampc
        )
        tx.marker = False
        if status:
            self._encode_failed(status)
            return
        packet.end = _PRESZ + length[0]
        lock = tx.mtx
        _lib.mtx_lock(lock)
        sent = 0
        if length[0]:
            sent = _lib.stream_send(head.strm, False, marker[0], -1, tx.ts_ext & 0xFFFFFFFF, packet)
        tx.ts_ext += sampc * codec.crate // codec.srate // max(1, codec.ch)
        _lib.mtx_unlock(lock)
        if sent:
            self.send_errors += 1

    def _send_events(self, head: Any) -> bool:
        # baresip's check_telev: one RFC 4733 packet per ptime while an event is on; True
        # when there was one.
        tx = head.tx
        event = self._event
        event.pos = event.end = _PRESZ
        marker = self._marker
        marker[0] = False
        lock = tx.mtx
        _lib.mtx_lock(lock)
        status = _lib.telev_poll(head.telev, marker, event)
        _lib.mtx_unlock(lock)
        if status:
            return False  # ENODATA: no event on
        if marker[0]:
            tx.ts_tel = tx.ts_ext & 0xFFFFFFFF
        found = _lib.sdp_media_rformat(_lib.stream_sdpmedia(head.strm), _lib.telev_rtpfmt)
        if found == _ffi.NULL:
            return True  # the far end did not offer telephone-event
        event.pos = _PRESZ
        _lib.mtx_lock(lock)
        sent = _lib.stream_send(head.strm, False, marker[0], found.pt, tx.ts_tel, event)
        _lib.mtx_unlock(lock)
        if sent:
            self.send_errors += 1
        else:
            self.events_sent += 1
        return True

    def _encode_failed(self, status: int) -> None:
        if not self._told_encode:
            self._told_encode = True
            _log.error(
                "baresip_audio_encode_failed",
                sip_call_id=self.call_id,
                error=errno.errorcode.get(status, str(status)),
            )

    def keep_sending(self) -> None:
        """A frame of silence (loop thread)."""
        self.send(self._silence)

    def drop_pending(self) -> None:
        """Forget the part of a longer packet not sent yet (barge-in)."""
        with self._lock:
            self._pending.clear()

    def close(self) -> None:
        """The stack released this source (re thread): nothing is sent from now on."""
        with self._lock:
            self._closed = True
            self._head = None
            self._packet = _lib.mem_deref(self._packet)
            self._event = _lib.mem_deref(self._event)


#: The current feed of each call, by baresip's call id (the SIP Call-ID), and every feed by
#: its state's address, for the release. Written on the re thread, read on the loop.
feeds: dict[str, CallFeed] = {}
_by_state: dict[int, CallFeed] = {}


def keep_idle_feeds_sending() -> None:
    """Silence from every feed no pump sends on yet, once per media tick (loop thread).

    A call's source starts before its pump does (the answer, or a 183's early media on a
    call we place), and a media clock sends from its first ptime on: RTP from the start is
    what opens a NAT binding or an SBC's latch for the far end's audio, ringback included.
    """
    for feed in list(feeds.values()):
        if not feed.claimed:
            feed.keep_sending()


def _call_of(audio: Any) -> str | None:
    """The id of the call whose ``struct audio`` is ``audio`` (re thread)."""
    entry = _lib.uag_list().head
    while entry != _ffi.NULL:
        call_entry = _lib.ua_calls(_ffi.cast("struct ua *", entry.data)).head
        while call_entry != _ffi.NULL:
            call = _ffi.cast("struct call *", call_entry.data)
            if _lib.call_audio(call) == audio:
                found = _lib.call_id(call)
                return None if found == _ffi.NULL else _ffi.string(found).decode()
            call_entry = call_entry.next
        entry = entry.next
    return None


def _release(state: Any) -> None:
    feed = _by_state.pop(int(_ffi.cast("uintptr_t", state)), None)
    if feed is None:
        return
    feed.close()
    if feeds.get(feed.call_id) is feed:
        del feeds[feed.call_id]


def take_transmit_thread(head: Any) -> bool:
    """Stand in an ended thread for the call's ``Audio TX`` thread, so the stack does not
    start one (*re thread*, during the source's allocation); False when no thread could be
    started for it (the stack then starts its own)."""
    tx = head.tx
    if tx.thr_run:
        # The source restarted (a re-INVITE changed the codec) and the stand-in, or a thread
        # of the stack's, is still the one it will join: nothing to do.
        return True
    thread = _ffi.new("unsigned long *")
    if _libc.pthread_create(thread, _ffi.NULL, _ENDS_AT_ONCE, _ffi.NULL):
        return False
    tx.thr_tid = thread[0]
    tx.thr_run = True
    return True


def _alloc(
    stp: Any, _as: Any, prm: Any, _device: Any, _read_handler: Any, _errh: Any, arg: Any
) -> int:
    if prm == _ffi.NULL or prm.fmt != _S16LE or not (prm.srate and prm.ch and prm.ptime):
        return errno.ENOTSUP
    audio = _ffi.cast("struct audio *", arg)
    call_id = _call_of(audio)
    if call_id is None:
        return errno.EINVAL
    state = _lib.mem_zalloc(1, _release_callback)
    if state == _ffi.NULL:
        return errno.ENOMEM
    frame_bytes = 2 * int(prm.srate) * int(prm.ch) * int(prm.ptime) // 1000
    head = transmit_half(audio, stp, frame_bytes)
    if head is None:
        _log.error(
            "baresip_audio_source_unchecked",
            sip_call_id=call_id,
            reason="baresip's struct audio is not the layout of baresip 4.10",
        )
    elif not take_transmit_thread(head):
        _log.error("baresip_audio_source_failed", sip_call_id=call_id, reason="no thread")
        _lib.mem_deref(state)
        return errno.EAGAIN
    feed = CallFeed(call_id, state, head, prm)
    _by_state[int(_ffi.cast("uintptr_t", state))] = feed
    feeds[call_id] = feed
    stp[0] = _ffi.cast("struct ausrc_st *", state)
    return 0


def _alloc_failed(_type: Any, _value: BaseException, _tb: Any) -> int:
    return errno.ENOMEM  # the stack logs the failed source against the call


def _release_failed(_type: Any, _value: BaseException, _tb: Any) -> None:
    return None


#: Module-level: the stack keeps these pointers for the life of the process.
_alloc_callback = _ffi.callback(
    "int(struct ausrc_st **, const struct ausrc *, struct ausrc_prm *, const char *,"
    " void (*)(struct auframe *, void *), void (*)(int, const char *, void *), void *)",
    _alloc,
    onerror=_alloc_failed,
)
_release_callback = _ffi.callback("void(void *)", _release, onerror=_release_failed)


def _add() -> tuple[int, Any]:
    handle = _ffi.new("struct ausrc **")
    sources = _lib.baresip_ausrcl()
    status = int(_lib.ausrc_register(handle, sources, _NAME_TEXT, _alloc_callback))
    return status, handle[0] if status == 0 else None


def registration() -> Registration:
    """The ``clock`` source, for the engine to register and release (*re thread*)."""
    return Registration(_add, _lib.mem_deref)


class StackAudio:
    """A call's audio for ``AudioPump``: received audio from the binding's ``call.audio``,
    transmitted audio through the call's current ``CallFeed``.

    As the binding does for its own streams: no feed (the source not started yet, or
    released at the call's end) raises ``AudioNotActive``, and a new one (the stack restarted
    the source: a re-INVITE that changed the codec) ``AudioRestarted`` once.
    """

    def __init__(self, received: Any, call_id: str) -> None:
        self._received = received
        self._call_id = call_id
        self._feed: CallFeed | None = None
        #: Until when (monotonic) digits the agent sends may be queued in the stack.
        self._events_until = 0.0
        #: What the call's earlier feeds sent, before the stack restarted the source.
        self._earlier = {"tx_event_packets": 0, "tx_send_errors": 0}

    def _current(self) -> CallFeed:
        feed = feeds.get(self._call_id)
        if feed is None:
            raise AudioNotActive("the call's audio source is not running")
        if feed is not self._feed:
            known, self._feed = self._feed, feed
            if known is not None:
                for key, value in _feed_counters(known).items():
                    self._earlier[key] += value
                raise AudioRestarted("the stack restarted the call's audio source")
        return feed

    def read(self, size: int) -> bytes:
        data: bytes = self._received.read(size)
        return data

    def write(self, frame: bytes) -> int:
        feed = self._current()
        feed.claimed = True
        until = self._events_until
        return feed.send(frame, poll_events=bool(until) and until >= time.monotonic())

    def expect_events(self, seconds: float) -> None:
        """Poll the stack's telephone events for ``seconds`` from now: the agent is sending
        digits (every call polling every tick would cost the loop three calls into the
        stack per call per tick for nothing)."""
        self._events_until = max(self._events_until, time.monotonic() + seconds)

    def ready(self) -> bool:
        return self._current().ready()

    def drop_pending(self) -> None:
        self._current().drop_pending()

    def stats(self) -> dict[str, int]:
        """Telephone-event packets sent, and sends the stack refused, so far."""
        now = _feed_counters(self._feed) if self._feed is not None else {}
        return {key: value + now.get(key, 0) for key, value in self._earlier.items()}


def _feed_counters(feed: CallFeed) -> dict[str, int]:
    # Packets sent are the stack's own count (``tx_packets`` of the call's RTP figures).
    return {"tx_event_packets": feed.events_sent, "tx_send_errors": feed.send_errors}
