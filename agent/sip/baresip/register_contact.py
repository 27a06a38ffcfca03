"""``sip.public_host`` in the Contact of baresip's REGISTERs (sans-I/O).

libre's registration client prints its Contact itself, from the contact user and the local
address the request leaves from (``sipreg`` ``send_handler``), with no setting for another
host: behind 1:1 NAT the registrar would store the private address and send calls there.
So the SIP UDP socket gets a libre UDP helper (``native.RegisterContactHelper``) that passes
every datagram through this rewriter, on the re thread:

- an outgoing REGISTER's Contact host becomes the public host (the port stays: 1:1 NAT
  keeps it, as ``sip.public_host`` assumes everywhere);
- in the registrar's responses to those REGISTERs, a Contact naming the public host, our
  contact user and port gets the local host back, so libre recognises its own binding and
  takes the lifetime the registrar granted to it (its ``contact_handler`` compares the
  Contact with the local address; without a match it assumes the requested lifetime).

Digest authentication does not cover the Contact, so the rewrite does not disturb it.
Everything else passes untouched (``None``: not ours to change).
"""

from __future__ import annotations

import re

_CSEQ_REGISTER = re.compile(rb"(?im)^cseq[ \t]*:[ \t]*\d+[ \t]+REGISTER\b")
_CALL_ID = re.compile(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)")
_END_OF_HEADERS = b"\r\n\r\n"
#: A Contact header field's first URI: (prefix through "@", user, host, the rest from ":").
_CONTACT = re.compile(
    rb"(?im)^((?:contact|m)[ \t]*:[^\r\n<]*<sips?:([^@>;]+)@)(\[[^\]]+\]|[^:;>\[]+)(:\d+)?"
)
#: Every Contact URI of a response (a registrar lists all the AOR's bindings).
_ANY_CONTACT_URI = re.compile(rb"(<sips?:([^@>;]+)@)(\[[^\]]+\]|[^:;>\[]+)(:\d+)?")
_CONTACT_LINE = re.compile(rb"(?im)^(?:contact|m)[ \t]*:[^\r\n]*")


class RegisterContactRewriter:
    """Rewrites the Contact host of our REGISTERs and back in their responses."""

    def __init__(self, public_host: str) -> None:
        self._public = public_host.encode()
        #: Call-ID of each registration -> (contact user, local host, ":port" or b"").
        self._bindings: dict[bytes, tuple[bytes, bytes, bytes]] = {}

    def outgoing(self, datagram: bytes) -> bytes | None:
        """The REGISTER with the public host in its Contact; None for anything else."""
        if not datagram.startswith(b"REGISTER "):
            return None
        head, sep, body = datagram.partition(_END_OF_HEADERS)
        call_id = _CALL_ID.search(head)
        contact = _CONTACT.search(head)
        if call_id is None or contact is None or contact[3] == self._public:
            return None
        user, host, port = contact[2], contact[3], contact[4] or b""
        self._bindings[call_id[1]] = (user, host, port)
        rewritten = head[: contact.start(3)] + self._public + head[contact.end(3) :]
        return rewritten + sep + body

    def incoming(self, datagram: bytes) -> bytes | None:
        """A response to one of our REGISTERs with our binding's local host back; None for
        anything else."""
        if not datagram.startswith(b"SIP/2.0 "):
            return None
        head, sep, body = datagram.partition(_END_OF_HEADERS)
        if not _CSEQ_REGISTER.search(head):
            return None
        call_id = _CALL_ID.search(head)
        binding = self._bindings.get(call_id[1]) if call_id is not None else None
        if binding is None:
            return None
        user, local, port = binding

        def local_uri(uri: re.Match[bytes]) -> bytes:
            if uri[2] == user and uri[3] == self._public and (uri[4] or b"") == port:
                return uri[1] + local + port
            return uri[0]

        def line(found: re.Match[bytes]) -> bytes:
            return _ANY_CONTACT_URI.sub(local_uri, found[0])

        rewritten = _CONTACT_LINE.sub(line, head)
        return None if rewritten == head else rewritten + sep + body
