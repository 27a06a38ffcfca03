"""A thread-less audio player for baresip: what a call receives is read from ``call.audio``.

baresip needs a player on every call (a call without one cannot even answer), and the one
baresip-python selects by default, ``aumem``'s, is a clock: a thread per call that wakes every
ptime to pull a frame out of the stack's playback buffer and throw it away. The caller's audio
never passes through it: the binding's decode filter copies every decoded frame into the
call's receive ring upstream of that buffer, and ``call.audio.read`` drains the ring, under
any player. So the agent registers a player of its own, ``discard``, that starts no thread
and pulls nothing. The playback buffer then stays full at its configured maximum (libre's
``aubuf`` drops its oldest frame as the decoder appends one, in the stack's receive path,
which runs anyway); nothing else reads it.

At 100 calls that is 100 fewer threads waking 50 times a second each, competing with the
event loop that paces every call (``agent.sip.baresip.media``); measured together with the
agent's own source (``agent.sip.baresip.source``, README "Benchmarks").

*re thread*: ``register`` and ``unregister`` run on baresip's ``baresip-re`` thread (through
``native.ReThreadExecutor``), as does the allocation callback, once per call's audio start.
"""

from __future__ import annotations

import errno
from typing import Any

import cffi
from baresip import _native as _baresip_native

from agent.sip.baresip.driver import Registration

#: The player's name in the stack's configuration (``audio_player``); at most 15 bytes.
NAME = "discard"

_ffi = cffi.FFI()
_ffi.cdef(
    """
    struct list; struct auplay; struct auplay_st; struct auplay_prm; struct auframe;
    struct list *baresip_auplayl(void);
    int auplay_register(struct auplay **pp, struct list *auplayl, const char *name,
                        int (*alloch)(struct auplay_st **stp, const struct auplay *ap,
                                      struct auplay_prm *prm, const char *device,
                                      void (*wh)(struct auframe *af, void *arg), void *arg));
    void *mem_zalloc(size_t size, void (*dh)(void *data));
    void *mem_deref(void *data);
    """
)
_lib: Any = _ffi.dlopen(_baresip_native.__file__)
#: The stack keeps the name's pointer, not a copy: it lives as long as the module.
_NAME_TEXT = _ffi.new("char[]", NAME.encode())
_ALLOC_TYPE = (
    "int(struct auplay_st **, const struct auplay *, struct auplay_prm *, const char *,"
    " void (*)(struct auframe *, void *), void *)"
)


def _on_alloc_failed(_type: Any, _value: BaseException, _tb: Any) -> int:
    # The stack logs the failed player against the call; the call's audio does not start.
    return errno.ENOMEM


def _alloc(stp: Any, _ap: Any, _prm: Any, _device: Any, _wh: Any, _arg: Any) -> int:
    # The stack only needs an object it can release (mem_deref) when the call's audio
    # stops; the write handler is never called, so nothing is kept of it.
    state = _lib.mem_zalloc(1, _ffi.NULL)
    if state == _ffi.NULL:
        return errno.ENOMEM
    stp[0] = _ffi.cast("struct auplay_st *", state)
    return 0


#: Module-level: the stack keeps the pointer for the life of the process.
_alloc_callback = _ffi.callback(_ALLOC_TYPE, _alloc, onerror=_on_alloc_failed)


def _add() -> tuple[int, Any]:
    handle = _ffi.new("struct auplay **")
    players = _lib.baresip_auplayl()
    status = int(_lib.auplay_register(handle, players, _NAME_TEXT, _alloc_callback))
    return status, handle[0] if status == 0 else None


def registration() -> Registration:
    """The ``discard`` player, for the engine to register and release (*re thread*)."""
    return Registration(_add, _lib.mem_deref)
