"""A SIP request as the request policy needs it, parsed once from the raw text at the edge.

Only what decides whether a request is served: method, Request-URI, the To tag (in a dialog
or not), the source address it came from, and headers by canonical name (compact forms
expanded). It is not a full RFC 3261 parser: anything it cannot read is ``None``, and the
stack behind it still parses (and answers) the request itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Compact header forms (RFC 3261 7.3.3 and later RFCs) -> canonical lower-case names.
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
}
_REQUEST_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9.!%*_+`'~-]*) (\S+) SIP/2\.0$")
_TAG = re.compile(r";\s*tag\s*=\s*([^;,\s>]+)", re.I)
#: Longest request text read (pjsip's own packet limit is 4000 bytes over UDP).
MAX_TEXT = 65536


@dataclass(frozen=True)
class SipRequest:
    """One received SIP request."""

    method: str
    uri: str
    source_ip: str
    source_port: int
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The body (an INVITE's SDP offer), "" when there is none.
    body: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case, compact or full), or None."""
        values = self.headers.get(_canonical(name))
        return values[0] if values else None

    @property
    def to_tag(self) -> str:
        """The To tag: set on requests inside a dialog, empty on a new one."""
        to = self.header("to") or ""
        # Only the tag of the To header's own parameters, not of a URI parameter.
        params = to.split(">", 1)[1] if ">" in to else to
        match = _TAG.search(params)
        return match.group(1) if match else ""

    @property
    def in_dialog(self) -> bool:
        return bool(self.to_tag)

    @property
    def uri_user(self) -> str:
        """The user part of the Request-URI (``+15550001`` in ``sip:+15550001@host``)."""
        return uri_user(self.uri)

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case, without parameters ("" when absent)."""
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()


def _canonical(name: str) -> str:
    lower = name.strip().lower()
    return _COMPACT.get(lower, lower)


def uri_user(uri: str) -> str:
    """The user part of a SIP URI or name-addr; "" when it has none."""
    inner = uri.split("<", 1)[1].split(">", 1)[0] if "<" in uri else uri
    scheme, sep, rest = inner.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips", "tel"):
        return ""
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    if "@" not in rest:
        return ""
    return rest.split("@", 1)[0].split(";", 1)[0]


def parse_request(text: str, source_ip: str, source_port: int) -> SipRequest | None:
    """The request in ``text`` (request line and headers), or None when it is not one."""
    head, _, body = text[:MAX_TEXT].partition("\r\n\r\n")
    lines = head.replace("\r\n", "\n").split("\n")
    match = _REQUEST_LINE.match(lines[0].strip()) if lines else None
    if match is None:
        return None
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and last is not None:  # folded continuation line
            headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = _canonical(name)
        headers.setdefault(last, []).append(value.strip())
    return SipRequest(
        method=match.group(1).upper(),
        uri=match.group(2),
        source_ip=source_ip,
        source_port=source_port,
        headers={name: tuple(values) for name, values in headers.items()},
        body=body,
    )


def sdp_audio_address(sdp: str) -> tuple[str, int] | None:
    """Where an SDP offer says its audio comes from: (connection address, audio port).

    The media-level ``c=`` of the first ``m=audio`` wins over the session-level one; None when
    the SDP has no audio stream, no address or port 0 (a declined stream).
    """
    session_ip = media_ip = ""
    port = 0
    in_media = in_audio = False
    for raw in sdp.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            if port:
                break  # only the first audio stream
            in_media = True
            in_audio = line.startswith("m=audio ")
            if in_audio:
                fields = line[2:].split()
                port = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        elif line.startswith("c=IN IP4 "):
            address = line[len("c=IN IP4 ") :].split("/", 1)[0].strip()
            if in_audio:
                media_ip = address
            elif not in_media:
                session_ip = address
    ip = media_ip or session_ip
    return (ip, port) if ip and port else None


def sdp_offers_srtp(sdp: str) -> bool:
    """Whether the first ``m=audio`` of an SDP is SDES-SRTP: an RTP/SAVP (or SAVPF) profile
    with an ``a=crypto`` line."""
    in_audio = profile_ok = crypto = False
    for raw in sdp.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            if in_audio:
                break
            fields = line[2:].split()
            in_audio = line.startswith("m=audio ")
            profile_ok = in_audio and len(fields) > 2 and fields[2] in ("RTP/SAVP", "RTP/SAVPF")
        elif in_audio and line.startswith("a=crypto:"):
            crypto = True
    return profile_ok and crypto


#: Static RTP payload types of the codecs the agent carries (RFC 3551).
_STATIC_PAYLOADS = {"0": "PCMU", "8": "PCMA", "9": "G722"}


def sdp_audio_codecs(sdp: str) -> list[str]:
    """The codecs the first ``m=audio`` of an SDP lists, in its order (upper-case names)."""
    payloads: list[str] = []
    names: dict[str, str] = {}
    for raw in sdp.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            if payloads:
                break  # only the first audio stream
            if line.startswith("m=audio "):
                payloads = line.split()[3:]
        elif payloads and line.startswith("a=rtpmap:"):
            pt, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            names[pt] = encoding.split("/", 1)[0].strip().upper()
    return [names.get(pt) or _STATIC_PAYLOADS.get(pt, pt) for pt in payloads]


def codecs_for_offer(offer_sdp: str, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The codecs to answer ``offer_sdp`` with: the first configured one it offers, alone.

    Stacks answer with the offer's order (RFC 3264 lets the answerer choose, and both
    engines keep the offerer's first): enabling only ours makes ``sip.codecs``' order the
    preference (G.722 when offered, say). Without an offer, or with nothing in common (the
    stack answers 488), the whole configured list.
    """
    offered = sdp_audio_codecs(offer_sdp)
    for codec in configured:
        if codec in offered:
            return (codec,)
    return configured


def sipfrag_status(body: str) -> tuple[int, str] | None:
    """The status line of a ``message/sipfrag`` body (a REFER's NOTIFY): (code, reason)."""
    first = body.strip().split("\n", 1)[0].strip()
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/") or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def wants_sips_contact(request: SipRequest) -> bool:
    """Whether our answer to ``request`` must carry a ``sips:`` Contact (RFC 5630): its
    Request-URI is ``sips:`` and it came over TLS (its top Via says so)."""
    via = (request.header("via") or "").split(",", 1)[0]
    transport = via.strip().split(None, 1)[0].upper() if via.strip() else ""
    return request.uri[:5].lower() == "sips:" and transport == "SIP/2.0/TLS"
