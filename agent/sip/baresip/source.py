"""The agent's audio source for baresip: the media clock writes each call's frames straight into
the stack's transmit buffer, with no thread of its own.

baresip sends a call's audio from its ``Audio TX`` thread: every 4 ms it looks whether a
ptime (20 ms) is due and, if its transmit buffer (libre's ``aubuf``) holds a frame, encodes
and sends it. What fills that buffer is the audio source, through the read handler it is
given. baresip-python's ``aumem`` source is a second thread per call, waking every ptime to
move a frame from a ring the application writes into that buffer (silence when the ring is
empty). The agent has its own clock already, one timer for all calls
(``agent.sip.baresip.media.MediaClock``), so it registers the source ``clock``: one
``CallFeed`` per call's source instance, which the clock's writes go through to the read
handler at once. Per call that is one thread fewer waking 50 times a second, and one
hand-off fewer between two clocks (``bench/results/capacity-own-audio.json``).

What the pump reads back comes from the transmit half of baresip's private ``struct audio``
(``struct autx`` of baresip 4.10, the one the pinned wheel bundles): its buffer, to know how
deep it is and to empty it on barge-in, and its count of ptimes that found less than a frame
(a gap the caller hears). The layout is trusted only once it names this feed's own source
state and the call's frame size.

Threads: the stack allocates and releases a source on its ``baresip-re`` thread (callbacks
here, under the GIL); the clock writes from the event loop. Each feed's lock keeps the two
apart: the stack frees its buffer only after releasing the source, and the release waits
for a write in progress and stops later ones.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
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
#: Reads of the stack's struct after which a feed whose layout never checked out stops trying.
_VALIDATE_TRIES = 50

_ffi = cffi.FFI()
_ffi.cdef(
    """
    struct le { struct le *prev; struct le *next; struct list *list; void *data; };
    struct list { struct le *head; struct le *tail; size_t cnt; };
    struct ausrc; struct ausrc_st; struct aubuf; struct call; struct ua; struct audio;
    struct auframe { int fmt; uint32_t srate; void *sampv; size_t sampc; uint64_t timestamp;
                     double level; uint16_t id; uint8_t ch; uint8_t padding[5]; };
    struct ausrc_prm { uint32_t srate; uint8_t ch; uint32_t ptime; int fmt; size_t duration; };
    struct list *baresip_ausrcl(void);
    int ausrc_register(struct ausrc **asp, struct list *ausrcl, const char *name,
                       int (*alloch)(struct ausrc_st **stp, const struct ausrc *as,
                                     struct ausrc_prm *prm, const char *device,
                                     void (*rh)(struct auframe *af, void *arg),
                                     void (*errh)(int err, const char *str, void *arg),
                                     void *arg));
    void auframe_init(struct auframe *af, int fmt, void *sampv, size_t sampc, uint32_t srate,
                      uint8_t ch);
    size_t aubuf_cur_size(struct aubuf *ab);
    void aubuf_flush(struct aubuf *ab);
    void *mem_zalloc(size_t size, void (*dh)(void *data));
    void *mem_deref(void *data);
    struct list *uag_list(void);
    struct list *ua_calls(const struct ua *ua);
    struct audio *call_audio(const struct call *call);
    const char *call_id(const struct call *call);
    /* baresip 4.10's struct autx (src/audio.c), up to its statistics */
    struct autx { const struct ausrc *as; struct ausrc_st *ausrc; struct ausrc_prm prm;
                  const void *ac; void *enc; struct aubuf *aubuf; size_t aubuf_maxsz;
                  bool aubuf_started; struct list filtl; void *mb; char *module;
                  char *device; void *sampv; uint32_t ptime; uint64_t ts_ext;
                  uint32_t ts_base; uint32_t ts_tel; size_t psize; bool marker; bool muted;
                  int cur_key; int src_fmt; int enc_fmt; uint64_t aubuf_overrun;
                  uint64_t aubuf_underrun; };
    /* the head of struct audio, without and with its debug MAGIC_DECL */
    struct audio_head { struct autx tx; };
    struct audio_head_magic { uint32_t magic; struct autx tx; };
    """
)
_lib: Any = _ffi.dlopen(_baresip_native.__file__)
#: The stack keeps the name's pointer, not a copy: it lives as long as the module.
_NAME_TEXT = _ffi.new("char[]", NAME.encode())


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What ``AudioPump`` reads of a transmit path: whether it is up, and how deep."""

    tx_ready: bool
    tx_buffered: int


@dataclass(frozen=True, slots=True)
class FeedStats:
    """The transmit counter ``AudioPump`` reads: ptimes the stack found less than a frame
    for (it sends nothing then)."""

    tx_silence_frames: int


class CallFeed:
    """One source instance of one call: the stack's read handler, fed from the loop."""

    def __init__(
        self, call_id: str, state: Any, audio: Any, read_handler: Any, arg: Any, prm: Any
    ) -> None:
        self.call_id = call_id
        self._state = state
        self._audio = audio
        self._read_handler = read_handler
        self._arg = arg
        self.rate = int(prm.srate)
        self.channels = int(prm.ch)
        self.frame_bytes = 2 * self.rate * self.channels * int(prm.ptime) // 1000
        self._lock = threading.Lock()
        self._closed = False
        self._tx: Any = None
        self._tries = 0
        # One frame, set up once and handed to the stack each write: its samples are ours to
        # copy into (the stack may mute them in place), not a Python bytes object's memory.
        self._samples = _ffi.new("uint8_t[]", self.frame_bytes)
        self._frame = _ffi.new("struct auframe *")
        _lib.auframe_init(
            self._frame, _S16LE, self._samples, self.frame_bytes // 2, self.rate, self.channels
        )
        self._silence = bytes(self.frame_bytes)
        #: Set once a call's pump writes here; until then ``keep_idle_feeds_sending`` does.
        self.claimed = False

    def ready(self) -> bool:
        """Whether the stack has finished starting this source (loop thread)."""
        return self._transmit_half() is not None

    def _transmit_half(self) -> Any:
        if self._tx is not None or self._closed or self._tries >= _VALIDATE_TRIES:
            return self._tx
        self._tries += 1
        if self._tries == _VALIDATE_TRIES:
            # Once per call: the agent stays silent on it (the stack sends nothing).
            _log.error(
                "baresip_audio_source_unchecked",
                sip_call_id=self.call_id,
                reason="baresip's struct audio is not the layout of baresip 4.10",
            )
        # The stack stores our state and its own buffer size once the allocation returns:
        # until both are there (or in a layout this module does not know) nothing is read.
        for layout in ("struct audio_head *", "struct audio_head_magic *"):
            tx = _ffi.cast(layout, self._audio).tx
            if (
                tx.ausrc == self._state
                and tx.psize == self.frame_bytes
                and tx.aubuf != _ffi.NULL
                and tx.src_fmt == _S16LE
            ):
                self._tx = tx
                break
        return self._tx

    def write(self, frame: bytes) -> int:
        """Hand one frame of the call's size to the stack (loop thread); the bytes taken (0
        once released, or for a frame of another size)."""
        with self._lock:
            if self._closed or len(frame) != self.frame_bytes or self._transmit_half() is None:
                return 0
            _ffi.memmove(self._samples, frame, self.frame_bytes)
            self._read_handler(self._frame, self._arg)
            return self.frame_bytes

    def keep_sending(self) -> None:
        """A frame of silence unless the stack holds one ahead already (loop thread)."""
        if self.buffered() < self.frame_bytes:
            self.write(self._silence)

    def buffered(self) -> int:
        """Bytes waiting in the stack's transmit buffer."""
        with self._lock:
            tx = None if self._closed else self._transmit_half()
            return 0 if tx is None else int(_lib.aubuf_cur_size(tx.aubuf))

    def flush(self) -> None:
        """Empty the stack's transmit buffer (barge-in)."""
        with self._lock:
            tx = None if self._closed else self._transmit_half()
            if tx is not None:
                _lib.aubuf_flush(tx.aubuf)

    def underruns(self) -> int:
        """Ptimes the stack's transmit thread found less than a frame to send."""
        with self._lock:
            tx = None if self._closed else self._transmit_half()
            return 0 if tx is None else int(tx.aubuf_underrun)

    def close(self) -> None:
        """The stack released this source (re thread): no write reaches it from now on."""
        with self._lock:
            self._closed = True


#: The current feed of each call, by baresip's call id (the SIP Call-ID), and every feed by
#: its state's address, for the release. Written on the re thread, read on the loop.
feeds: dict[str, CallFeed] = {}
_by_state: dict[int, CallFeed] = {}


def keep_idle_feeds_sending() -> None:
    """Silence into every feed no pump writes to yet, once per media tick (loop thread).

    A call's source starts before its pump does (the answer, or a 183's early media on a
    call we place), and baresip-python's own source sends silence from its first ptime on:
    RTP from the start is what opens a NAT binding or an SBC's latch for the far end's
    audio, ringback included.
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


def _alloc(
    stp: Any, _as: Any, prm: Any, _device: Any, read_handler: Any, _errh: Any, arg: Any
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
    feed = CallFeed(call_id, state, audio, read_handler, arg, prm)
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
    the source: a re-INVITE that changed the codec) ``AudioRestarted`` once, so the pump
    fills the new buffer afresh.
    """

    def __init__(self, received: Any, call_id: str) -> None:
        self._received = received
        self._call_id = call_id
        self._feed: CallFeed | None = None

    def _current(self) -> CallFeed:
        feed = feeds.get(self._call_id)
        if feed is None:
            raise AudioNotActive("the call's audio source is not running")
        if feed is not self._feed:
            known, self._feed = self._feed, feed
            if known is not None:
                raise AudioRestarted("the stack restarted the call's audio source")
        return feed

    def read(self, size: int) -> bytes:
        data: bytes = self._received.read(size)
        return data

    def write(self, frame: bytes) -> int:
        feed = self._current()
        feed.claimed = True
        return feed.write(frame)

    def flush_tx(self) -> None:
        self._current().flush()

    def info(self) -> FeedInfo:
        feed = self._current()
        if not feed.ready():
            return FeedInfo(False, 0)
        return FeedInfo(True, feed.buffered())

    def stats(self) -> FeedStats:
        return FeedStats(self._current().underruns())
