"""The libre/baresip C functions the public baresip-python API does not reach, through cffi.

baresip-python 0.5.2a3 cannot answer a request with a chosen status and headers (its reject is
486 only), tells nothing about a call's RTP sockets or exact codec or a registration's
lifetime, opens TLS only on the SIP port + 1, and lets every request through to baresip. Its
native module exports libre's and baresip's own symbols, so this module declares the few it
needs, with the struct layouts of libre 4.10 (the version that wheel bundles;
``check_versions`` refuses anything else at start):

- a SIP request listener placed at the head of libre's list, so every request not absorbed by
  a transaction is seen here before baresip's own listeners (``RequestListener``);
- the request's raw text and source address, read from ``struct sip_msg`` (``read_request``);
- a stateful reply with our own status and headers (``reply``);
- a final response to a ringing call with our own status and headers (``reject_ringing``);
- a call's negotiated codec and RTP/RTCP sockets (``call_media``);
- our own hold as a direction change (``set_audio_direction``): baresip's ``call_hold`` also
  stops the stream sending, so the caller would hear silence instead of music on hold.
- the user agent baresip will hand a new INVITE to (``account_for``), a new user agent's
  Contact user and the registration lifetime its registrar granted (``newest_agent``,
  ``registration_expires``);
- a TLS transport on a port and with PEM text of our choosing (``add_tls_transport``);
- the Contact host of the REGISTERs, over UDP, TCP and TLS (``RegisterContactHelper``: libre
  prints it from the local address, ``agent.sip.baresip.register_contact`` says why);
- symmetric RTP for a caller behind NAT: the source of the first media datagram on a call's
  socket (``watch_media_source``) and where the call's RTP and RTCP go from then on
  (``set_media_destination``): baresip sends to its SDP's address only;
- where a request arrived (``arrival``), the Contact a user agent's next call answers with
  (``set_contact``) and the address a call's SDP names (``set_sdp_address``): for
  ``sip.public_host`` and ``sips:`` calls, which baresip has no setting for.

libre is not thread-safe: everything marked *re thread* must run on baresip's ``baresip-re``
thread, either inside a callback libre makes (the request listener) or through
``ReThreadExecutor``, which runs Python callables there.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import baresip
import cffi
import structlog
from baresip import _events
from baresip import _native as _baresip_native

T = TypeVar("T")
#: (IPv4 address, port).
Address = tuple[str, int]

#: The one baresip-python this module's layouts were checked against, and its libre.
SUPPORTED_VERSION = "0.5.2a3"
SUPPORTED_STACK = "4.10.0"

_ffi = cffi.FFI()
_ffi.cdef(
    """
    struct pl { const char *p; size_t l; };
    struct list;
    struct le { struct le *prev; struct le *next; struct list *list; void *data; };
    struct list { struct le *head; struct le *tail; size_t cnt; };
    /* union of sockaddr, sockaddr_in, sockaddr_in6, sockaddr_un (110 bytes, 4-aligned),
       then socklen_t */
    struct sa { uint32_t u[28]; uint32_t len; };
    struct uri { struct pl scheme; struct pl user; struct pl host; int af; uint16_t port;
                 struct pl path; struct pl params; struct pl headers; };
    struct sip_via { struct pl sentby; struct sa addr; struct pl params; struct pl branch;
                     struct pl val; int tp; };
    struct sip_taddr { struct pl dname; struct pl auri; struct uri uri; struct pl params;
                       struct pl tag; struct pl val; };
    struct sip_cseq { struct pl met; uint32_t num; };
    struct sip_rack { struct pl met; uint32_t rel_seq; uint32_t cseq; };
    struct msg_ctype { struct pl type; struct pl subtype; struct pl params; };
    struct mbuf { uint8_t *buf; size_t size; size_t pos; size_t end; };
    struct sip_msg {
        struct sa src; struct sa dst; struct pl ver; struct pl met; struct pl ruri;
        struct uri uri; uint16_t scode; struct pl reason; struct list hdrl;
        struct sip_via via; struct sip_taddr to; struct sip_taddr from;
        struct sip_cseq cseq; struct sip_rack rack; uint32_t rel_seq;
        struct msg_ctype ctyp; struct pl callid; struct pl maxfwd; struct pl expires;
        struct pl clen; void *hdrht; struct mbuf *mb; void *sock; uint64_t tag; int tp;
        bool req;
    };
    struct sip_addr { struct pl dname; struct pl auri; struct uri uri; struct pl params; };
    struct sip_lsnr { struct le le; };
    struct aucodec { struct le le; const char *pt; const char *name; uint32_t srate;
                     uint32_t crate; uint8_t ch; uint8_t pch; uint32_t ptime; };
    struct sip; struct sip_strans; struct call; struct ua; struct audio; struct stream;
    struct rtp_sock; struct udp_sock;

    struct sip *uag_sip(void);
    int sip_listen(struct sip_lsnr **lsnrp, struct sip *sip, bool req,
                   bool (*msgh)(const struct sip_msg *msg, void *arg), void *arg);
    int sip_treplyf(struct sip_strans **stp, void **mbp, struct sip *sip,
                    const struct sip_msg *msg, bool rec_route, uint16_t scode,
                    const char *reason, const char *fmt, ...);
    int sip_addr_decode(struct sip_addr *addr, const struct pl *pl);
    void list_unlink(struct le *le);
    void list_prepend(struct list *list, struct le *le, void *data);
    void *mem_deref(void *data);
    int sa_ntop(const struct sa *sa, char *buf, int size);
    uint16_t sa_port(const struct sa *sa);

    struct call *uag_call_find(const char *id);
    struct ua *call_get_ua(const struct call *call);
    void ua_hangupf(struct ua *ua, struct call *call, uint16_t scode, const char *reason,
                    const char *fmt, ...);
    struct audio *call_audio(const struct call *call);
    int call_msg_src(const struct call *call, struct sa *sa);
    const struct aucodec *audio_codec(const struct audio *au, bool tx);
    struct stream *audio_strm(const struct audio *au);
    struct rtp_sock *stream_rtp_sock(const struct stream *strm);
    const struct sa *stream_raddr(const struct stream *strm);
    void *rtp_sock(const struct rtp_sock *rs);
    void *rtcp_sock(const struct rtp_sock *rs);
    int udp_sock_fd(const struct udp_sock *us);
    struct account;
    struct list *uag_list(void);
    struct account *ua_account(const struct ua *ua);
    int account_set_audio_codecs(struct account *acc, const char *codecs);
    enum sdp_dir { SDP_INACTIVE = 0, SDP_RECVONLY = 1, SDP_SENDONLY = 2, SDP_SENDRECV = 3 };
    bool call_refresh_allowed(const struct call *call);
    void call_get_mdir(struct call *call, enum sdp_dir *ap, enum sdp_dir *vp);
    void call_set_mdir(struct call *call, enum sdp_dir a, enum sdp_dir v);
    int call_modify(struct call *call);
    struct ua *uag_find_msg(const struct sip_msg *msg);
    const char *ua_local_cuser(const struct ua *ua);
    void ua_pub_gruu_set(struct ua *ua, const struct pl *pval);
    struct sipsess; struct sip_dialog;
    /* the head of baresip's struct call, without and with its debug MAGIC_DECL */
    struct call_head { struct le le; const void *cfg; struct ua *ua; struct account *acc;
                       struct sipsess *sess; };
    struct call_head_magic { uint32_t magic; struct le le; const void *cfg; struct ua *ua;
                             struct account *acc; struct sipsess *sess; };
    struct sip_dialog *sipsess_dialog(const struct sipsess *sess);
    const char *sip_dialog_callid(const struct sip_dialog *dlg);
    const struct uri *sip_dialog_route(const struct sip_dialog *dlg);
    int sip_dialog_tp(const struct sip_dialog *dlg);
    const struct sa *call_laddr(const struct call *call);
    struct re_printf;
    int ua_print_status(struct re_printf *pf, const struct ua *ua);
    int _re_sdprintf(char **strp, const char *fmt, ...);
    struct tls;
    int tls_alloc(struct tls **tlsp, int method, const char *keyfile, const char *pwd);
    int tls_set_certificate_pem(struct tls *tls, const char *cert, size_t len_cert,
                                const char *key, size_t len_key);
    int tls_add_cafile_path(struct tls *tls, const char *cafile, const char *capath);
    void tls_disable_verify_server(struct tls *tls);
    int tls_set_min_proto_version(struct tls *tls, int version);
    int sa_set_str(struct sa *sa, const char *addr, uint16_t port);
    int sip_transp_add_sock(struct sip *sip, int tp, bool listen, const struct sa *laddr, ...);
    int sip_transp_laddr(struct sip *sip, struct sa *laddr, int tp, const struct sa *dst);
    /* the head of libre's private struct sip_transport (src/sip) */
    struct sip_transport_head { struct le le; struct sa laddr; struct sip *sip;
                                void *ht_ccert; struct tls *tls; void *sock; int tp; };
    struct udp_helper;
    int udp_register_helper(struct udp_helper **uhp, struct udp_sock *us, int layer,
                            bool (*sh)(int *err, struct sa *dst, struct mbuf *mb, void *arg),
                            bool (*rh)(struct sa *src, struct mbuf *mb, void *arg),
                            void *arg);
    int mbuf_write_mem(struct mbuf *mb, const uint8_t *buf, size_t size);
    /* the heads of baresip's private struct sender (src/stream.c: where a stream sends, what
       stream_raddr points into) and libre's private struct rtp_sock (src/rtp/rtp.c) */
    struct stream_sender { void *metric; struct sa raddr_rtp; struct sa raddr_rtcp;
                           int pt_enc; bool enabled; void *lock; };
    struct rtp_sock_head { uint16_t seq; uint32_t ssrc; void *sock_rtp; void *sock_rtcp;
                           struct sa local; struct sa rtcp_peer; void *recvh; void *rtcph;
                           void *arg; void *rtcp; bool rtcp_mux; };
    /* libre's private struct sip (src/sip/sip.h), its struct sip_conn (a SIP TCP or TLS connection,
       src/sip/transp.c) and the heads of struct tcp_conn and struct tcp_helper (src/tcp) */
    struct sip_private { struct list transpl; struct list lsnrl; struct list reql;
                      void *ht_ctrans; void *ht_strans; void *ht_strans_mrg; void *ht_conn;
                      void *ht_udpconn; void *ht_conncfg; void *dnsc; void *stun;
                      void *websock; char *software; void *exith; void *traceh; void *arg;
                      bool closing; uint8_t tos; int tp_def; };
    struct tmr { struct le le; uintptr_t llock; void *th; void *arg; uint64_t jfs;
                 const char *file; int line; };
    struct tcp_conn;
    struct sip_conn { struct le he; struct list ql; struct list kal; struct tmr tmr;
                      struct tmr tmr_ka; struct sa laddr; struct sa paddr; void *sc;
                      struct tcp_conn *tc; struct mbuf *mb; struct sip *sip;
                      uint32_t ka_interval; bool established; int tp; void *websock_conn; };
    struct tcp_helper_head { struct le le; int layer; void *estabh; void *sendh; void *recvh;
                             void *arg; };
    struct hash;
    struct list *hash_list(const struct hash *h, uint32_t key);
    uint32_t sa_hash(const struct sa *sa, int flag);
    bool sa_cmp(const struct sa *l, const struct sa *r, int flag);
    int tcp_conn_peer_get(const struct tcp_conn *tc, struct sa *peer);
    struct tcp_helper;
    int tcp_register_helper(struct tcp_helper **thp, struct tcp_conn *tc, int layer,
                            bool (*eh)(int *err, bool active, void *arg),
                            bool (*sh)(int *err, struct mbuf *mb, void *arg),
                            bool (*rh)(int *err, struct mbuf *mb, bool *estab, void *arg),
                            void *arg);
    void sip_set_trace_handler(struct sip *sip,
                               void (*traceh)(bool tx, int tp, const struct sa *src,
                                              const struct sa *dst, const uint8_t *pkt,
                                              size_t len, void *arg));
    int mtx_lock(void *mtx);
    int mtx_unlock(void *mtx);
    void dbg_init(int level, int flags);
    void dbg_handler_set(void (*ph)(int level, const char *p, size_t len, void *arg), void *arg);
    """
)
_lib: Any = _ffi.dlopen(_baresip_native.__file__)
_LISTENER_TYPE = "bool(const struct sip_msg *, void *)"
#: Longest request read (UDP datagrams are smaller; a TCP message may not be).
_MAX_MESSAGE = 65536


#: libre's DBG_WARNING: its warnings and errors, not its notices.
_DBG_WARNING = 4
_dbg_callback: Any = None


def capture_libre_debug(handler: Callable[[str], None]) -> None:
    """libre's own debug lines (``DEBUG_WARNING``, one per garbage datagram) to ``handler``,
    on whatever thread libre prints from, instead of straight to stderr."""
    global _dbg_callback

    def on_line(_level: int, text: Any, size: int, _arg: Any) -> None:
        handler(bytes(_ffi.buffer(text, size)).decode("utf-8", "replace"))

    _dbg_callback = _ffi.callback("void(int, const char *, size_t, void *)", on_line)
    _lib.dbg_init(_DBG_WARNING, 0)
    _lib.dbg_handler_set(_dbg_callback, _ffi.NULL)


def check_versions() -> str | None:
    """Why this module cannot be used with the installed baresip-python (None when it can)."""
    if baresip.__version__ != SUPPORTED_VERSION:
        return f"baresip-python {baresip.__version__} (the engine needs {SUPPORTED_VERSION})"
    stack = _baresip_native.ffi.string(_baresip_native.lib.bp_version()).decode()
    if SUPPORTED_STACK not in stack:
        return f"baresip stack {stack!r} (the engine needs {SUPPORTED_STACK})"
    return None


def _text(pl: Any) -> str:
    if pl.p == _ffi.NULL or pl.l == 0:
        return ""
    return bytes(_ffi.buffer(pl.p, pl.l)).decode("utf-8", "replace")


def _address(sa: Any) -> Address | None:
    buffer = _ffi.new("char[64]")
    if _lib.sa_ntop(sa, buffer, 64) != 0:
        return None
    return _ffi.string(buffer).decode(), int(_lib.sa_port(sa))


@dataclass(frozen=True)
class RawRequest:
    """A request as received: its whole text (start line, headers, body) and source."""

    text: str
    source: Address


def read_request(msg: Any) -> RawRequest | None:
    """The request ``msg`` (a ``const struct sip_msg *``); None when the layout check fails.

    *re thread* (the listener's callback). The check: the version string sits where the
    layout puts it, inside the message buffer the layout points to.
    """
    mb = msg.mb
    if mb == _ffi.NULL or not 0 < mb.end <= _MAX_MESSAGE:
        return None
    start = int(_ffi.cast("uintptr_t", mb.buf))
    ver = int(_ffi.cast("uintptr_t", msg.ver.p))
    if not (start <= ver < start + mb.end) or _text(msg.ver) != "SIP/2.0":
        return None
    source = _address(_ffi.addressof(msg.src))
    if source is None:
        return None
    text = bytes(_ffi.buffer(mb.buf, mb.end)).decode("utf-8", "replace")
    return RawRequest(text, source)


#: libre's ``enum sip_transp``: a request's transport, by its number.
TRANSPORTS = {0: "udp", 1: "tcp", 2: "tls"}


@dataclass(frozen=True)
class Arrival:
    """Where a request arrived: our address and port, and its transport ("udp", ...)."""

    address: Address
    transport: str


def arrival(msg: Any) -> Arrival | None:
    """Our end of ``msg`` (``struct sip_msg`` ``dst`` and ``tp``); None for a transport this
    module does not name (WebSocket) or an unreadable address (*re thread*)."""
    transport = TRANSPORTS.get(int(msg.tp))
    local = _address(_ffi.addressof(msg.dst))
    if transport is None or local is None:
        return None
    return Arrival(local, transport)


def set_contact(msg: Any, uri: str) -> bool:
    """Make ``uri`` the Contact of the call the new INVITE ``msg`` is about to create; False
    when baresip has no user agent for it (*re thread*).

    baresip's Contact is its user agent's "contact user" and the address the request came to
    (libre's ``sip_contact_print``), unless the user agent has a public GRUU, which libre
    prints as the whole URI: so the URI is set as that user agent's GRUU. The dialog copies
    it when baresip accepts the INVITE, right after this listener returns on this thread,
    so each call keeps the Contact set for its own INVITE. (REGISTER takes the contact
    user, not the GRUU: ``RegisterContactHelper`` does the REGISTER's.)
    """
    agent = _lib.uag_find_msg(msg)
    if agent == _ffi.NULL:
        return False
    set_agent_contact(agent, uri)
    return True


def set_agent_contact(agent: Any, uri: str) -> None:
    """Make ``uri`` the Contact of what user agent ``agent`` (``struct ua *``) sends next:
    the next call it accepts or places (its public GRUU, see ``set_contact``; *re
    thread*)."""
    encoded = uri.encode()
    keep = _ffi.new("char[]", encoded)
    _lib.ua_pub_gruu_set(agent, _ffi.new("struct pl *", (keep, len(encoded))))


def agent_contact_user(agent: Any) -> str:
    """The contact user of user agent ``agent`` (``struct ua *``; *re thread*)."""
    user = _lib.ua_local_cuser(agent)
    return "" if user == _ffi.NULL else _ffi.string(user).decode()


def contact_user(msg: Any) -> str | None:
    """The contact user of the user agent baresip hands the new INVITE ``msg`` to; None
    for none (*re thread*)."""
    agent = _lib.uag_find_msg(msg)
    if agent == _ffi.NULL:
        return None
    user = _lib.ua_local_cuser(agent)
    return None if user == _ffi.NULL else _ffi.string(user).decode()


def set_sdp_address(call_id: str, address: str) -> bool:
    """Name ``address`` (an IP address) in the o= and c= lines of the call's SDP from now
    on; False when the call is gone or the address does not parse (*re thread*).

    baresip takes the call's SDP address from the interface facing the caller and has no
    setting for it; for a call it answers, nothing sets it again (only a call it places
    resets it per offer), so writing it once before the answer holds for the call's life.
    """
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return False
    laddr = _lib.call_laddr(call)
    if laddr == _ffi.NULL:
        return False
    # call_laddr points into the call's SDP session (sdp_session_laddr): set it in place.
    target = _ffi.cast("struct sa *", laddr)
    return bool(_lib.sa_set_str(target, address.encode(), _lib.sa_port(target)) == 0)


def _dialog(call: Any, call_id: str) -> Any:
    """The ``struct sip_dialog *`` of ``call``, or NULL when neither layout of the head of
    baresip's ``struct call`` checks out: its user agent must be ``call_get_ua``'s and its
    dialog's Call-ID ``call_id``."""
    agent = _lib.call_get_ua(call)
    for layout in ("struct call_head *", "struct call_head_magic *"):
        head = _ffi.cast(layout, call)
        if head.ua != agent or head.sess == _ffi.NULL:
            continue
        dialog = _lib.sipsess_dialog(head.sess)
        if dialog == _ffi.NULL:
            continue
        found = _lib.sip_dialog_callid(dialog)
        if found != _ffi.NULL and _ffi.string(found).decode("utf-8", "replace") == call_id:
            return dialog
    return _ffi.NULL


def reach_sips_target(call_id: str) -> bool:
    """Let libre send the call's in-dialog requests (BYE, re-INVITE, REFER) to a caller
    whose Contact is ``sips:``; False when the call, its dialog or a ``sips:`` target is
    not found (*re thread*).

    libre refuses to send any request to a ``sips:`` route (ENOSYS), so the agent could not
    hang up on, hold or transfer a ``sips:`` caller. The dialog keeps the transport the
    INVITE came over (TLS, checked by the caller of this), and the Request-URI stays the
    caller's ``sips:`` Contact: only the route's scheme as libre reads it becomes "sip"
    (the first three letters of "sips"). A target refresh by the caller (a re-INVITE with a
    new Contact) decodes it again; until this runs again for it, the agent's requests fail
    as before.
    """
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return False
    dialog = _dialog(call, call_id)
    if dialog == _ffi.NULL:
        return False
    if int(_lib.sip_dialog_tp(dialog)) != _SIP_TRANSP_TLS:
        return False  # never over a transport a sips: target rules out
    route = _ffi.cast("struct uri *", _lib.sip_dialog_route(dialog))
    if _text(route.scheme).lower() != "sips":
        return False
    route.scheme.l = 3
    return True


def contact_parses(contact: str) -> bool:
    """Whether libre itself can decode ``contact`` (a Contact header's value).

    ``sipsess_accept`` fails on a Contact it cannot decode, and in baresip-python 0.5.2a3
    that failure leaks a call slot and corrupts the heap: such INVITEs never reach baresip.
    A pure parser (no libre state), so any thread may call it.
    """
    encoded = contact.encode()
    keep = _ffi.new("char[]", encoded)
    pl = _ffi.new("struct pl *", (keep, len(encoded)))
    addr = _ffi.new("struct sip_addr *")
    return bool(_lib.sip_addr_decode(addr, pl) == 0)


def reply(msg: Any, code: int, reason: str, headers: tuple[tuple[str, str], ...]) -> None:
    """A stateful final response to ``msg`` (*re thread*).

    Through a server transaction: retransmissions of the request and, for an INVITE, the
    ACK are absorbed by libre.
    """
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    tail = _ffi.new("char[]", f"{lines}Content-Length: 0\r\n\r\n".encode())
    _lib.sip_treplyf(
        _ffi.NULL, _ffi.NULL, _lib.uag_sip(), msg, False, code, reason.encode(),
        b"%s", tail,
    )  # fmt: skip


def reject_ringing(
    call_id: str, code: int, reason: str, headers: tuple[tuple[str, str], ...]
) -> bool:
    """A final error response with our headers to a ringing call; False when it is gone.

    *re thread*. The same native path the binding's own reject takes (``ua_hangupf``), so
    the binding still sees the call close.
    """
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return False
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    _lib.ua_hangupf(
        _lib.call_get_ua(call),
        call,
        code,
        reason.encode(),
        b"%s",
        _ffi.new("char[]", lines.encode()),
    )
    return True


NULL: Any = _ffi.NULL


def address_of(pointer: Any) -> int:
    """A pointer's address, as a key."""
    return int(_ffi.cast("uintptr_t", pointer))


def account_for(msg: Any) -> Any:
    """The account of the user agent baresip will hand the new INVITE ``msg`` to (*re
    thread*): its own choice, by the Request-URI's user (``uag_find_msg``); NULL for none."""
    agent = _lib.uag_find_msg(msg)
    return _ffi.NULL if agent == _ffi.NULL else _lib.ua_account(agent)


def account_of(agent: Any) -> Any:
    """The ``struct account *`` of the ``struct ua *`` ``agent`` (*re thread*)."""
    return _lib.ua_account(agent)


def newest_agent() -> tuple[Any, str]:
    """The ``struct ua *`` created last (baresip appends each new one) and the user part of
    its Contact: its account's user, with a random suffix when another user agent has the
    same user (*re thread*)."""
    agents = _lib.uag_list()
    if agents == _ffi.NULL or agents.tail == _ffi.NULL:
        raise RuntimeError("baresip has no user agent")
    agent = _ffi.cast("struct ua *", agents.tail.data)
    user = _lib.ua_local_cuser(agent)
    return agent, "" if user == _ffi.NULL else _ffi.string(user).decode()


_EXPIRES = re.compile(r"Expires (\d+)s")


def registration_expires(agent: Any) -> int:
    """The registration lifetime ``agent``'s registrar granted, in seconds; 0 while none
    (*re thread*). baresip tells it only in its status line (``ua_print_status``)."""
    out = _ffi.new("char **")
    printer = _ffi.addressof(_lib, "ua_print_status")
    if _lib._re_sdprintf(out, b"%H", printer, _ffi.cast("struct ua *", agent)) != 0:
        return 0
    try:
        text = _ffi.string(out[0]).decode("utf-8", "replace")
    finally:
        _lib.mem_deref(out[0])
    match = _EXPIRES.search(text)
    return int(match.group(1)) if match else 0


#: libre's ``enum sip_transp`` and ``enum tls_method`` values used here.
_SIP_TRANSP_TLS = 2
_TLS_METHOD_TLS = 0
#: OpenSSL's ``TLS1_2_VERSION``: the oldest TLS accepted, as on PJSIP.
_TLS1_2 = 0x0303


@dataclass(frozen=True)
class TlsTransport:
    """What a TLS transport is opened with (``add_tls_transport``)."""

    host: str
    port: int
    #: PEM text of our certificate chain and key ("" for a client-only transport).
    cert_pem: bytes
    key_pem: bytes
    ca_file: str
    ca_path: str
    verify_server: bool


def add_tls_transport(spec: TlsTransport) -> int:
    """Open SIP over TLS on ``spec.host:spec.port`` (listening when there is a certificate);
    0 or an errno (*re thread*).

    baresip's own TLS transport listens on the SIP port + 1 and wants key and certificate in
    one file; libre's API takes the port and the PEM text as given.
    """
    slot = _ffi.new("struct tls **")
    status = _lib.tls_alloc(slot, _TLS_METHOD_TLS, _ffi.NULL, _ffi.NULL)
    if status != 0:
        return int(status)
    tls = slot[0]
    try:
        status = _lib.tls_set_min_proto_version(tls, _TLS1_2)
        if status != 0:
            return int(status)
        if spec.cert_pem:
            status = _lib.tls_set_certificate_pem(
                tls, spec.cert_pem, len(spec.cert_pem), spec.key_pem, len(spec.key_pem)
            )
            if status != 0:
                return int(status)
        if spec.ca_file or spec.ca_path:
            status = _lib.tls_add_cafile_path(
                tls,
                spec.ca_file.encode() if spec.ca_file else _ffi.NULL,
                spec.ca_path.encode() if spec.ca_path else _ffi.NULL,
            )
            if status != 0:
                return int(status)
        if not spec.verify_server:
            _lib.tls_disable_verify_server(tls)
        local = _ffi.new("struct sa *")
        status = _lib.sa_set_str(local, spec.host.encode(), spec.port)
        if status != 0:
            return int(status)
        return int(
            _lib.sip_transp_add_sock(
                _lib.uag_sip(),
                _SIP_TRANSP_TLS,
                bool(spec.cert_pem),
                local,
                _ffi.cast("struct tls *", tls),
            )
        )
    finally:
        _lib.mem_deref(tls)  # the transport holds its own reference


def set_account_codecs(account: Any, codecs: str) -> None:
    """The audio codecs (baresip names, comma-separated) new calls of ``account`` get."""
    if account != _ffi.NULL:
        _lib.account_set_audio_codecs(account, codecs.encode())


def end_unanswered(call_id: str) -> bool:
    """Drop a call whose 200 awaits its ACK (*re thread*); False when it is gone.

    Once libre then takes the ACK, it ends the dialog it acknowledges with a BYE.
    """
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return False
    _lib.ua_hangupf(_lib.call_get_ua(call), call, 0, b"no audio was negotiated", _ffi.NULL)
    return True


#: ``set_audio_direction``'s answers besides 0 (sent) and an errno.
CALL_GONE = -1
REFRESH_BUSY = -2


def set_audio_direction(call_id: str, send_only: bool) -> int:
    """Offer a=sendonly (``send_only``) or a=sendrecv in a re-INVITE (*re thread*): 0 once
    it is sent, ``CALL_GONE``, ``REFRESH_BUSY`` (another offer is in flight; try again) or
    an errno. Unlike ``call_hold``, the stream keeps sending: our audio still reaches the
    far end, which the answer (a=recvonly) allows."""
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return CALL_GONE
    if not _lib.call_refresh_allowed(call):
        return REFRESH_BUSY
    audio = _ffi.new("enum sdp_dir *")
    video = _ffi.new("enum sdp_dir *")
    _lib.call_get_mdir(call, audio, video)
    direction = _lib.SDP_SENDONLY if send_only else _lib.SDP_SENDRECV
    _lib.call_set_mdir(call, direction, video[0])
    return int(_lib.call_modify(call))


@dataclass(frozen=True)
class CallMedia:
    """A call's audio as the stack has it: codec, where its RTP goes, its sockets."""

    codec: str | None
    rate: int
    #: Where the INVITE came from (the caller's signalling address).
    signalling: Address | None
    remote_rtp: Address | None
    rtp_fd: int
    rtcp_fd: int


def _media_socket(stream: Any, rtcp: bool) -> Any:
    """A stream's RTP (``rtcp``: RTCP) ``struct udp_sock *``, or NULL."""
    sockets = _lib.stream_rtp_sock(stream)
    if sockets == _ffi.NULL:
        return _ffi.NULL
    sock = _lib.rtcp_sock(sockets) if rtcp else _lib.rtp_sock(sockets)
    return _ffi.cast("struct udp_sock *", sock)


def call_media(call_id: str) -> CallMedia | None:
    """The call's audio stream, or None when the call or its audio is gone (*re thread*)."""
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return None
    audio = _lib.call_audio(call)
    if audio == _ffi.NULL:
        return None
    codec = _lib.audio_codec(audio, True)
    name = _ffi.string(codec.name).decode().upper() if codec != _ffi.NULL else None
    rate = int(codec.srate) if codec != _ffi.NULL else 0
    source = _ffi.new("struct sa *")
    signalling = _address(source) if _lib.call_msg_src(call, source) == 0 else None
    stream = _lib.audio_strm(audio)
    if stream == _ffi.NULL:
        return CallMedia(name, rate, signalling, None, -1, -1)
    remote = _address(_lib.stream_raddr(stream))
    rtp, rtcp = _media_socket(stream, False), _media_socket(stream, True)
    rtp_fd = int(_lib.udp_sock_fd(rtp)) if rtp != _ffi.NULL else -1
    rtcp_fd = int(_lib.udp_sock_fd(rtcp)) if rtcp != _ffi.NULL else -1
    return CallMedia(name, rate, signalling, remote, rtp_fd, rtcp_fd)


class RequestListener:
    """A SIP request listener at the head of libre's list: ``handler(msg)`` sees each
    request first and returns True when it answered it (baresip then never sees it).

    ``handler`` runs on the re thread; an exception in it is logged by ``on_error`` and the
    request dropped (the caller's retransmission meets a working handler or the same fate).
    """

    def __init__(
        self, handler: Callable[[Any], bool], on_error: Callable[[BaseException], None]
    ) -> None:
        self._handler = handler
        self._on_error = on_error
        self._slot = _ffi.new("struct sip_lsnr **")
        # Kept alive here: libre holds only the function pointer.
        self._callback = _ffi.callback(_LISTENER_TYPE, self._on_request, onerror=self._failed)

    def _on_request(self, msg: Any, _arg: Any) -> bool:
        return bool(self._handler(msg))

    def _failed(self, _type: Any, value: BaseException, _tb: Any) -> bool:
        self._on_error(value)
        return True

    def install(self) -> None:
        """*re thread*. libre appends listeners; ours moves to the head of the list."""
        status = _lib.sip_listen(self._slot, _lib.uag_sip(), True, self._callback, _ffi.NULL)
        if status != 0:
            raise OSError(status, "sip_listen failed")
        element = _ffi.addressof(self._slot[0].le)
        owner = element.list
        _lib.list_unlink(element)
        _lib.list_prepend(owner, element, self._slot[0])

    def uninstall(self) -> None:
        """*re thread*; before the runtime closes."""
        if self._slot[0] != _ffi.NULL:
            _lib.mem_deref(self._slot[0])
            self._slot[0] = _ffi.NULL


class ReThreadExecutor:
    """Runs Python callables on the ``baresip-re`` thread.

    libre must only be called from its own thread (``re_thread_enter`` from another thread
    acts on a second libre context here: the binding initialises libre on the loop thread
    and runs it on ``baresip-re``). The binding's event sink is called synchronously on the
    re thread for every stack event, so this wraps it: ``run`` queues a callable and sends a
    PING command, and the sink runs the queue before passing the PONG (or any earlier
    event) on.
    """

    def __init__(self, runtime: baresip.Runtime) -> None:
        self._runtime = runtime
        self._queue: deque[tuple[Callable[[], Any], list[tuple[bool, Any]]]] = deque()
        self._inner = _events.set_sink(self._sink)
        self.thread: threading.Thread | None = None

    def _sink(self, event: int, handle: int, payload: bytes | None) -> None:
        queue = self._queue
        while queue:
            function, box = queue.popleft()
            try:
                box.append((True, function()))
            except Exception as exc:
                box.append((False, exc))
        inner = self._inner
        if inner is not None:
            inner(event, handle, payload)

    async def run(self, function: Callable[[], T]) -> T:
        box: list[tuple[bool, Any]] = []
        self._queue.append((function, box))
        await self._runtime.cmd(_baresip_native.lib.BP_CMD_PING)
        if not box:
            # Cannot happen while the sink is ours: the PONG passed through it.
            raise RuntimeError("the re thread did not run the call")
        ok, value = box[0]
        if not ok:
            raise value
        result: T = value
        return result

    def close(self) -> None:
        """Give the binding its own sink back."""
        _events.set_sink(self._inner)
        self._inner = None


_SIP_TRANSP_UDP = 0
_HELPER_SEND = "bool(int *, struct sa *, struct mbuf *, void *)"
_HELPER_RECV = "bool(struct sa *, struct mbuf *, void *)"
#: Below any helper libre or baresip adds to the SIP socket (they add none to it today).
_HELPER_LAYER = -1000


def _sip_udp_socket(port: int) -> Any:
    """libre's ``struct udp_sock *`` of the SIP UDP transport on ``port``, or NULL when no
    transport checks out (each candidate's list entry must point back at it and name the
    stack's ``struct sip``: a wrong layout is refused, not followed; *re thread*)."""
    sip = _lib.uag_sip()
    if sip == _ffi.NULL:
        return _ffi.NULL
    entry = _ffi.cast("struct sip_private *", sip).transpl.head
    while entry != _ffi.NULL:
        transport = _ffi.cast("struct sip_transport_head *", entry.data)
        if (
            _ffi.cast("void *", transport) == _ffi.cast("void *", entry)
            and transport.sip == sip
            and transport.tp == _SIP_TRANSP_UDP
            and transport.sock != _ffi.NULL
            and _lib.sa_port(_ffi.addressof(transport.laddr)) == port
        ):
            return _ffi.cast("struct udp_sock *", transport.sock)
        entry = entry.next
    return _ffi.NULL


def _rewrite(mb: Any, prefix: bytes, rewrite: Callable[[bytes], bytes | None]) -> None:
    """Replace the datagram ``mb`` holds (from ``pos`` to ``end``) by ``rewrite``'s bytes,
    when it starts with ``prefix`` and ``rewrite`` returns any (only those are copied out:
    every SIP datagram passes here)."""
    start, end = int(mb.pos), int(mb.end)
    if end - start < len(prefix) or _ffi.buffer(mb.buf + start, len(prefix))[:] != prefix:
        return
    replacement = rewrite(bytes(_ffi.buffer(mb.buf + start, end - start)))
    if replacement is None:
        return
    mb.end = start
    if _lib.mbuf_write_mem(mb, replacement, len(replacement)) == 0:
        mb.pos = start


class RegisterContactHelper:
    """libre helpers on the SIP transports: ``outgoing`` may rewrite each REGISTER sent,
    ``incoming`` each response received, before libre's SIP stack sees it (*re thread*):
    one UDP helper on the SIP socket (``install``), and one TCP helper on each SIP TCP or
    TLS connection a REGISTER goes out on (``install_streams``).

    An exception in either is logged by ``on_error`` and the message passes unchanged.
    """

    def __init__(
        self,
        outgoing: Callable[[bytes], bytes | None],
        incoming: Callable[[bytes], bytes | None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.outgoing = outgoing
        self.incoming = incoming
        self.on_error = on_error
        self._slot = _ffi.new("struct udp_helper **")
        # Kept alive here: libre holds only the function pointers, until the socket closes.
        self._send = _ffi.callback(_HELPER_SEND, self._on_send, onerror=self._failed)
        self._recv = _ffi.callback(_HELPER_RECV, self._on_recv, onerror=self._failed)

    def _on_send(self, _err: Any, _dst: Any, mb: Any, _arg: Any) -> bool:
        _rewrite(mb, b"REGISTER ", self.outgoing)
        return False  # sent on as it now is

    def _on_recv(self, _src: Any, mb: Any, _arg: Any) -> bool:
        _rewrite(mb, b"SIP/2.0 ", self.incoming)
        return False  # on to the SIP stack

    def _failed(self, _type: Any, value: BaseException, _tb: Any) -> bool:
        self.on_error(value)
        return False

    def install_streams(self) -> bool:
        """On every SIP TCP and TLS connection, from the REGISTER that opens it (through
        libre's SIP trace, which this takes over); False without a stack (*re thread*)."""
        global _stream_contact
        sip = _lib.uag_sip()
        if sip == _ffi.NULL:
            return False
        _stream_contact = self
        _lib.sip_set_trace_handler(sip, _sip_trace)
        return True

    def uninstall_streams(self) -> None:
        """Stop rewriting on SIP connections (*re thread*)."""
        global _stream_contact
        if _stream_contact is self:
            _stream_contact = None
            sip = _lib.uag_sip()
            if sip != _ffi.NULL:
                _lib.sip_set_trace_handler(sip, _ffi.NULL)

    def install(self, port: int) -> bool:
        """On the SIP UDP socket bound to ``port``; False when it is not found (*re
        thread*)."""
        sock = _sip_udp_socket(port)
        if sock == _ffi.NULL:
            return False
        status = _lib.udp_register_helper(
            self._slot, sock, _HELPER_LAYER, self._send, self._recv, _ffi.NULL
        )
        return bool(status == 0)


# -- the REGISTER Contact over TCP and TLS --------------------------------------------------
_SIP_TRANSP_TCP = 1
#: libre's ``SA_ALL``: address and port (how it hashes and compares a connection's peer).
_SA_ALL = 3
#: Above TLS, which libre starts at layer 0 on a SIP connection: sending runs the helpers
#: from the highest layer down and receiving from the lowest up, so this one sees plain text.
_STREAM_HELPER_LAYER = 100
_STREAM_SEND = "bool(int *, struct mbuf *, void *)"
_STREAM_RECV = "bool(int *, struct mbuf *, bool *, void *)"
_TRACE = "void(bool, int, const struct sa *, const struct sa *, const uint8_t *, size_t, void *)"

#: The helper whose rewriters the SIP connections' helpers call (one stack per process).
#: The callbacks below live as long as the process: a connection helper left after the
#: engine stopped finds None here and passes everything on.
_stream_contact: RegisterContactHelper | None = None


def _stream_failed(_type: Any, value: BaseException, _tb: Any) -> None:
    helper = _stream_contact
    if helper is not None:
        helper.on_error(value)


def _on_stream_send(_err: Any, mb: Any, _arg: Any) -> bool:
    helper = _stream_contact
    if helper is not None:
        _rewrite(mb, b"REGISTER ", helper.outgoing)
    return False  # on down to TLS or the socket


def _on_stream_recv(_err: Any, mb: Any, _estab: Any, _arg: Any) -> bool:
    # A TCP read is not a message: a response whose head is split over two reads passes
    # unchanged (libre then assumes the lifetime it asked for, as without the rewrite).
    helper = _stream_contact
    if helper is not None:
        _rewrite(mb, b"SIP/2.0 ", helper.incoming)
    return False  # on to the SIP stack


def _on_sip_trace(tx: bool, tp: int, src: Any, dst: Any, pkt: Any, size: int, _arg: Any) -> None:
    """libre's SIP trace, called just before each message is handed to its connection: a
    REGISTER's connection gets the helper first, so even the one that opened it is rewritten
    (libre prints the Contact when it opens the connection, before any helper could be
    there; *re thread*)."""
    helper = _stream_contact
    if not tx or helper is None or tp not in (_SIP_TRANSP_TCP, _SIP_TRANSP_TLS):
        return
    if size < 9 or _ffi.buffer(pkt, 9)[:] != b"REGISTER ":
        return
    connection = _sip_connection(src, dst, secure=tp == _SIP_TRANSP_TLS)
    if connection == _ffi.NULL:
        helper.on_error(RuntimeError("its SIP connection was not found: the layout check failed"))
    elif not _has_stream_helper(connection):
        status = _lib.tcp_register_helper(
            _ffi.NULL, connection, _STREAM_HELPER_LAYER, _ffi.NULL,
            _stream_send, _stream_recv, _ffi.NULL,
        )  # fmt: skip
        if status != 0:
            helper.on_error(OSError(status, "tcp_register_helper failed"))


_stream_send = _ffi.callback(_STREAM_SEND, _on_stream_send, error=False, onerror=_stream_failed)
_stream_recv = _ffi.callback(_STREAM_RECV, _on_stream_recv, error=False, onerror=_stream_failed)
_sip_trace = _ffi.callback(_TRACE, _on_sip_trace, onerror=_stream_failed)


def _sip_connection(src: Any, dst: Any, secure: bool) -> Any:
    """The ``struct tcp_conn *`` of libre's SIP connection from ``src`` to ``dst``, or NULL
    (*re thread*). Found as libre's own ``conn_find`` does, in ``struct sip``'s connection
    table; each layout is checked before it is followed: ``struct sip``'s trace handler must
    be ours, and a connection must be its own list entry, name the stack's ``struct sip``
    and both addresses, and its TCP connection the same peer."""
    sip = _lib.uag_sip()
    if sip == _ffi.NULL:
        return _ffi.NULL
    stack = _ffi.cast("struct sip_private *", sip)
    if stack.traceh != _ffi.cast("void *", _sip_trace) or stack.ht_conn == _ffi.NULL:
        return _ffi.NULL
    bucket = _lib.hash_list(_ffi.cast("struct hash *", stack.ht_conn), _lib.sa_hash(dst, _SA_ALL))
    entry = bucket.head if bucket != _ffi.NULL else _ffi.NULL
    peer = _ffi.new("struct sa *")
    while entry != _ffi.NULL:
        conn = _ffi.cast("struct sip_conn *", entry.data)
        if (
            _ffi.cast("void *", conn) == _ffi.cast("void *", entry)
            and conn.sip == sip
            and (conn.sc != _ffi.NULL) == secure
            and conn.tc != _ffi.NULL
            and _lib.sa_cmp(_ffi.addressof(conn.paddr), dst, _SA_ALL)
            and _lib.sa_cmp(_ffi.addressof(conn.laddr), src, _SA_ALL)
            and _lib.tcp_conn_peer_get(conn.tc, peer) == 0
            and _lib.sa_cmp(peer, dst, _SA_ALL)
        ):
            return conn.tc
        entry = entry.next
    return _ffi.NULL


def _has_stream_helper(connection: Any) -> bool:
    """Whether the TCP connection already has our helper (``struct tcp_conn`` begins with
    its list of helpers; *re thread*)."""
    entry = _ffi.cast("struct list *", connection).head
    ours = _ffi.cast("void *", _stream_send)
    while entry != _ffi.NULL:
        if _ffi.cast("struct tcp_helper_head *", entry.data).sendh == ours:
            return True
        entry = entry.next
    return False


# -- symmetric RTP --------------------------------------------------------------------------
#: Above every helper the stack puts on a media socket (STUN and ICE at 0 or below, SDES-SRTP
#: at 10, bundle at 40): a datagram reaches this layer only once the stack takes it as media
#: (decrypted and authenticated under SRTP), so no forged packet is latched onto.
_MEDIA_WATCH_LAYER = 100


def _audio_stream(call_id: str) -> tuple[Any, Any]:
    """The call's audio and its stream, or NULLs (*re thread*)."""
    call = _lib.uag_call_find(call_id.encode())
    if call == _ffi.NULL:
        return _ffi.NULL, _ffi.NULL
    audio = _lib.call_audio(call)
    if audio == _ffi.NULL:
        return _ffi.NULL, _ffi.NULL
    return audio, _lib.audio_strm(audio)


class _MediaWatch:
    """One pending watch: its libre helper and who is told the source."""

    def __init__(self, on_source: Callable[[Address], None]) -> None:
        self.slot = _ffi.new("struct udp_helper **")
        self.on_source = on_source


#: Pending watches by key. One callback serves them all and lives as long as the process, so
#: a helper left on a socket (its call ended unlatched; the socket frees it) never calls into
#: freed code: it finds no entry and passes the datagram on.
_media_watches: dict[int, _MediaWatch] = {}
_media_watch_keys = iter(range(1, 2**62))


def _on_media_datagram(src: Any, mb: Any, arg: Any) -> bool:
    key = int(_ffi.cast("uintptr_t", arg))
    if key not in _media_watches:
        return False
    start = int(mb.pos)
    if int(mb.end) - start < 8 or mb.buf[start] >> 6 != 2:
        return False  # not RTP or RTCP (version 2)
    source = _address(src)
    # One atomic pop: the loop thread may forget the watch (its call ended) meanwhile.
    watch = _media_watches.pop(key, None) if source is not None else None
    if watch is None or source is None:
        return False
    # Safe inside the helper's own callback: libre's receive loop took the next helper
    # before calling this one, and holds no lock meanwhile.
    _lib.mem_deref(watch.slot[0])
    watch.on_source(source)
    return False  # on to the stack as media


def _media_watch_failed(_type: Any, value: BaseException, _tb: Any) -> bool:
    structlog.get_logger("sip").error("rtp_latch_failed", error=repr(value))
    return False


_media_datagram = _ffi.callback(_HELPER_RECV, _on_media_datagram, onerror=_media_watch_failed)


def watch_media_source(
    call_id: str, rtcp: bool, on_source: Callable[[Address], None]
) -> int | None:
    """Tell ``on_source`` (on the re thread) where the first media datagram the stack accepts
    on the call's RTP (``rtcp``: RTCP) socket came from, once; a key for
    ``forget_media_watch``, or None when the call or its socket is gone (*re thread*)."""
    _, stream = _audio_stream(call_id)
    if stream == _ffi.NULL:
        return None
    sock = _media_socket(stream, rtcp)
    if sock == _ffi.NULL:
        return None
    key = next(_media_watch_keys)
    watch = _MediaWatch(on_source)
    _media_watches[key] = watch
    status = _lib.udp_register_helper(
        watch.slot, sock, _MEDIA_WATCH_LAYER, _ffi.NULL, _media_datagram, _ffi.cast("void *", key)
    )
    if status != 0:
        del _media_watches[key]
        return None
    return key


def forget_media_watch(key: int) -> None:
    """Stop telling a watch's source (its call ended); any thread. Its helper stays on the
    socket, which frees it, and passes every datagram on."""
    _media_watches.pop(key, None)


def _payload_type(codec: Any) -> int | None:
    if codec == _ffi.NULL or codec.pt == _ffi.NULL:
        return None
    text = _ffi.string(codec.pt).decode()
    return int(text) if text.isdigit() else None


def set_media_destination(call_id: str, rtp: Address | None, rtcp: Address | None) -> bool:
    """Send the call's RTP to ``rtp`` and its RTCP to ``rtcp`` (either None: unchanged) from
    now on, not where its SDP said; False when the call is gone or a layout check fails
    (*re thread*).

    baresip keeps the destination in its stream's private sender, which ``stream_raddr``
    points into and its transmit thread reads under the sender's lock; RTCP reports go to
    the RTP socket's own copy (``rtcp_peer``, read on this thread). The checks: the sender's
    payload type is the negotiated codec's, its lock exists, and the RTP socket's head
    names the sockets libre's accessors return. A re-INVITE's SDP puts the SDP's address
    back (``stream_update``): call this again after each.
    """
    audio, stream = _audio_stream(call_id)
    if stream == _ffi.NULL:
        return False
    raddr = _lib.stream_raddr(stream)
    sockets = _lib.stream_rtp_sock(stream)
    if raddr == _ffi.NULL or sockets == _ffi.NULL:
        return False
    sender = _ffi.cast(
        "struct stream_sender *",
        _ffi.cast("char *", raddr) - _ffi.offsetof("struct stream_sender", "raddr_rtp"),
    )
    head = _ffi.cast("struct rtp_sock_head *", sockets)
    expected_pt = _payload_type(_lib.audio_codec(audio, True))
    if (
        sender.lock == _ffi.NULL
        or (expected_pt is not None and expected_pt < 96 and sender.pt_enc != expected_pt)
        or head.sock_rtp != _lib.rtp_sock(sockets)
        or head.sock_rtcp != _lib.rtcp_sock(sockets)
    ):
        return False
    if rtcp is None and head.rtcp_mux:
        rtcp = rtp  # RTCP shares the RTP socket, and so its destination
    _lib.mtx_lock(sender.lock)
    try:
        if rtp is not None:
            _lib.sa_set_str(_ffi.addressof(sender.raddr_rtp), rtp[0].encode(), rtp[1])
        if rtcp is not None:
            _lib.sa_set_str(_ffi.addressof(sender.raddr_rtcp), rtcp[0].encode(), rtcp[1])
    finally:
        _lib.mtx_unlock(sender.lock)
    if rtcp is not None:
        _lib.sa_set_str(_ffi.addressof(head.rtcp_peer), rtcp[0].encode(), rtcp[1])
    return True
