"""The request policy in front of pjsua: a pjsip module registered through ctypes.

pjsua2 offers no hook that sees a request before pjsua serves it: its presence server answers
SUBSCRIBE (and sends NOTIFYs to any Contact), its IM module answers MESSAGE with 200, unknown
methods get no answer, and an INVITE takes a call slot before the application hears of it
(pjsua itself answers 486 once the slots are gone). So this module sits in pjsip's own
chain, after the transaction layer (retransmissions of requests already answered never reach
it) and before the dialog layer (it sees in-dialog requests too), and answers with
``pjsip_endpt_respond`` whatever :class:`~agent.sip.request_policy.RequestPolicy` refuses.
Everything else passes on untouched.

It reads the raw request text and source address out of ``pjsip_rx_data``, whose layout is
mirrored below from pjsip 2.15's ``sip_transport.h`` (default ``PJSIP_MAX_PKT_LEN``). The
layout is checked on every request (the message pointer must point into the packet buffer,
its length must fit it); if the check ever fails, the gate logs it once and lets everything
through, so a different wheel degrades to pjsua's own behaviour instead of misreading memory.

In poll mode the callback runs on the event loop thread, inside ``libHandleEvents``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import pjsua2 as pj
import structlog

from agent.observe.ratelimit import KeyedRateLimit
from agent.sip.message import SipRequest, parse_request
from agent.sip.request_policy import ALLOW, Answer, RequestPolicy

log = structlog.get_logger("sip")

_lib = ctypes.CDLL(pj._pjsua2.__file__)
_vp = ctypes.c_void_p

#: pjsip's module priorities: transaction layer 16, user agent (dialog) layer 32.
_PRIORITY = 31
_PJSIP_MAX_PKT_LEN = 4000
_PJ_INET6_ADDRSTRLEN = 46
_PJSIP_H_ALLOW = 4


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


def _pj_str(text: bytes) -> _PjStr:
    return _PjStr(text, len(text))


_ON_RX = ctypes.CFUNCTYPE(ctypes.c_int, _vp)


class _Module(ctypes.Structure):
    """``pjsip_module`` (sip_module.h)."""

    _fields_ = [
        ("prev", _vp),
        ("next", _vp),
        ("name", _PjStr),
        ("id", ctypes.c_int),
        ("priority", ctypes.c_int),
        ("load", _vp),
        ("start", _vp),
        ("stop", _vp),
        ("unload", _vp),
        ("on_rx_request", _ON_RX),
        ("on_rx_response", _vp),
        ("on_tx_request", _vp),
        ("on_tx_response", _vp),
        ("on_tsx_state", _vp),
    ]


class _IoqueueOpKey(ctypes.Structure):
    """``pj_ioqueue_op_key_t`` (ioqueue.h)."""

    _fields_ = [("internal", _vp * 32), ("activesock_data", _vp), ("user_data", _vp)]


class _RxDataPrefix(ctypes.Structure):
    """The start of ``pjsip_rx_data``: tp_info, pkt_info and msg_info's first two fields."""

    _fields_ = [
        # tp_info
        ("pool", _vp),
        ("transport", _vp),
        ("tp_data", _vp),
        ("op_key", _IoqueueOpKey),
        ("op_key_rdata", _vp),
        # pkt_info
        ("timestamp_sec", ctypes.c_long),
        ("timestamp_msec", ctypes.c_long),
        ("packet", ctypes.c_char * _PJSIP_MAX_PKT_LEN),
        ("zero", ctypes.c_uint32),
        ("len", ctypes.c_ssize_t),
        ("src_addr", ctypes.c_char * 28),  # pj_sockaddr: the IPv6 member is the largest
        ("src_addr_len", ctypes.c_int),
        ("src_name", ctypes.c_char * _PJ_INET6_ADDRSTRLEN),
        ("src_port", ctypes.c_int),
        # msg_info
        ("msg_buf", _vp),
        ("msg_len", ctypes.c_int),
    ]


class _HdrList(ctypes.Structure):
    """The list head of ``pjsip_hdr`` (only prev/next are read by pjsip)."""

    _fields_ = [("prev", _vp), ("next", _vp)]


class _ArrayHdr(ctypes.Structure):
    """``pjsip_generic_array_hdr`` (the Allow capability)."""

    _fields_ = [
        ("prev", _vp),
        ("next", _vp),
        ("type", ctypes.c_int),
        ("name", _PjStr),
        ("sname", _PjStr),
        ("vptr", _vp),
        ("count", ctypes.c_uint),
        ("values", _PjStr * 32),
    ]


_lib.pjsua_get_pjsip_endpt.restype = _vp
_lib.pjsip_endpt_register_module.argtypes = [_vp, ctypes.POINTER(_Module)]
_lib.pjsip_endpt_unregister_module.argtypes = [_vp, ctypes.POINTER(_Module)]
_lib.pjsip_generic_string_hdr_create.restype = _vp
_lib.pjsip_generic_string_hdr_create.argtypes = [
    _vp,
    ctypes.POINTER(_PjStr),
    ctypes.POINTER(_PjStr),
]
_lib.pj_list_insert_before.argtypes = [_vp, _vp]
_lib.pjsip_endpt_respond.argtypes = [
    _vp,
    _vp,
    _vp,
    ctypes.c_int,
    ctypes.POINTER(_PjStr),
    _vp,
    _vp,
    _vp,
]
_lib.pjsip_endpt_get_capability.restype = ctypes.POINTER(_ArrayHdr)
_lib.pjsip_endpt_get_capability.argtypes = [_vp, ctypes.c_int, ctypes.POINTER(_PjStr)]


def _read(rdata: int) -> tuple[SipRequest | None, str] | None:
    """The request in ``rdata`` and its body; None when the layout check fails (never
    guess); (None, "") when it is not a request ``parse_request`` reads."""
    prefix = _RxDataPrefix.from_address(rdata)
    packet = rdata + _RxDataPrefix.packet.offset
    start = prefix.msg_buf or 0
    if not (packet <= start < packet + _PJSIP_MAX_PKT_LEN):
        return None
    if not (0 < prefix.msg_len <= packet + _PJSIP_MAX_PKT_LEN - start):
        return None
    text = ctypes.string_at(start, prefix.msg_len).decode("utf-8", "replace")
    source = prefix.src_name.decode("ascii", "replace")
    return parse_request(text, source, int(prefix.src_port)), text.partition("\r\n\r\n")[2]


class PjsipRequestGate:
    """Registers the policy module on the running pjsua endpoint; ``close`` before libDestroy."""

    def __init__(
        self,
        policy: RequestPolicy,
        on_answer: Callable[[SipRequest, Answer], None],
        before_new_call: Callable[[SipRequest, str], None],
    ) -> None:
        self.policy = policy
        self._on_answer = on_answer
        self._before_new_call = before_new_call
        self._endpt = _lib.pjsua_get_pjsip_endpt()
        self._callback = _ON_RX(self._on_rx_request)  # kept: pjsip holds only the pointer
        self._name = b"mod-voice-agent-gate"
        self._module = _Module()
        self._module.name = _pj_str(self._name)
        self._module.id = -1
        self._module.priority = _PRIORITY
        self._module.on_rx_request = self._callback
        self._disabled = False
        self._errors = KeyedRateLimit(interval_s=60.0)
        status = _lib.pjsip_endpt_register_module(self._endpt, ctypes.byref(self._module))
        if status != 0:
            raise pj.Error(status, "cannot register the request gate", "", "", 0)
        self._registered = True
        self._trim_allow()

    def _trim_allow(self) -> None:
        # pjsua advertises what its modules could do (SUBSCRIBE, MESSAGE, REFER, ...) in the
        # Allow header of its own responses; list only what the agent serves.
        allow = _lib.pjsip_endpt_get_capability(self._endpt, _PJSIP_H_ALLOW, None)
        if not allow:
            return
        header = allow.contents
        kept = [
            header.values[i]
            for i in range(min(header.count, 32))
            if header.values[i].ptr is not None
            and header.values[i].ptr[: header.values[i].slen].decode() in ALLOW
        ]
        for index, value in enumerate(kept):
            header.values[index] = value
        header.count = len(kept)

    def close(self) -> None:
        if self._registered:
            _lib.pjsip_endpt_unregister_module(self._endpt, ctypes.byref(self._module))
            self._registered = False

    def _on_rx_request(self, rdata: int | None) -> int:
        # Nothing may escape into C: an exception here would be printed and the request left
        # to pjsua, which is the safe default anyway.
        try:
            if self._disabled or not rdata:
                return 0
            read = _read(rdata)
            if read is None:
                self._disabled = True
                log.error("sip_gate_disabled", reason="pjsip_rx_data layout not recognised")
                return 0
            request, body = read
            if request is None:
                return 0
            answer = self.policy.decide(request)
            if answer is None:
                if request.method == "INVITE" and not request.in_dialog:
                    self._before_new_call(request, body)
                return 0
            if answer.code:
                self._respond(rdata, answer)
            # else dropped: absorbed here, unanswered, and no transaction kept for it
            self._on_answer(request, answer)
            return 1
        except Exception as exc:
            if self._errors.allow(type(exc).__name__):
                log.exception("sip_gate_failed", error=repr(exc)[:200])
            return 0

    def _respond(self, rdata: int, answer: Answer) -> None:
        pool = _RxDataPrefix.from_address(rdata).pool
        head = _HdrList()
        head_address = ctypes.addressof(head)
        head.prev = head.next = head_address
        for name, value in answer.headers:
            name_bytes, value_bytes = name.encode(), value.encode()
            hdr = _lib.pjsip_generic_string_hdr_create(
                pool, ctypes.byref(_pj_str(name_bytes)), ctypes.byref(_pj_str(value_bytes))
            )
            if hdr:
                _lib.pj_list_insert_before(head_address, hdr)
        reason = answer.reason.encode()
        # Stateful: the transaction absorbs retransmissions and, for an INVITE, the ACK.
        _lib.pjsip_endpt_respond(
            self._endpt, None, rdata, answer.code, ctypes.byref(_pj_str(reason)),
            head_address, None, None,
        )  # fmt: skip
