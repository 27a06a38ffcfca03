"""Kernel-side source filters for a call's RTP and RTCP sockets: a stranger's packets never
reach the media stack.

A media stack that follows RTP to a new source address ("latching", for callers behind NAT)
can be talked into sending a call's audio anywhere: pjmedia moves to a new source after ten
packets from it while the caller pauses (silence suppression, hold), and takes them as the
caller's audio. Filtering in the stack is not possible from Python, so the filter sits in
the kernel: a classic BPF socket filter (``SO_ATTACH_FILTER``) on the call's own socket that
accepts only datagrams from the negotiated (or first latched) address and drops the rest
before the stack reads them. Unlike ``connect()``, it changes nothing else about the socket
(no ICMP errors surface as receive errors, the stack's own ``sendto`` works as before).

IPv4 only, like the agent's SIP and RTP transports.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct

# linux/filter.h
_BPF_LD, _BPF_LDX, _BPF_JMP, _BPF_RET = 0x00, 0x01, 0x05, 0x06
_BPF_W, _BPF_H, _BPF_B = 0x00, 0x08, 0x10
_BPF_ABS, _BPF_IND, _BPF_MSH = 0x20, 0x40, 0xA0
_BPF_JEQ, _BPF_K = 0x10, 0x00
#: Negative offsets reach the network header (the filter's offset 0 is the UDP header).
_SKF_NET_OFF = -0x100000
_SO_ATTACH_FILTER = 26
_SO_DETACH_FILTER = 27
_ACCEPT = 0xFFFFFFFF


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


def _k(value: int) -> int:
    return value & 0xFFFFFFFF


def _admit(ip: str, port: int) -> list[tuple[int, int, int, int]]:
    """Accept datagrams from exactly ``ip``:``port``; anything else goes on to what follows."""
    return [
        (_BPF_LD | _BPF_W | _BPF_ABS, 0, 0, _k(_SKF_NET_OFF + 12)),
        (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 4, int(ipaddress.IPv4Address(ip))),
        (_BPF_LDX | _BPF_B | _BPF_MSH, 0, 0, _k(_SKF_NET_OFF)),
        (_BPF_LD | _BPF_H | _BPF_IND, 0, 0, _k(_SKF_NET_OFF)),
        (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 1, port),
        (_BPF_RET | _BPF_K, 0, 0, _ACCEPT),
    ]


def source_program(
    ip: str, port: int | None, also: tuple[tuple[str, int], ...] = ()
) -> list[tuple[int, int, int, int]]:
    """A BPF program accepting only IPv4 datagrams from ``ip`` (and ``port``, if given), and
    from each exact address of ``also`` (a STUN server answering the socket's keepalives)."""
    address = int(ipaddress.IPv4Address(ip))
    program: list[tuple[int, int, int, int]] = [op for ip_port in also for op in _admit(*ip_port)]
    program += [
        # A = source address (IPv4 header bytes 12-15)
        (_BPF_LD | _BPF_W | _BPF_ABS, 0, 0, _k(_SKF_NET_OFF + 12)),
    ]
    if port is None:
        program += [
            (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 1, address),
            (_BPF_RET | _BPF_K, 0, 0, _ACCEPT),
            (_BPF_RET | _BPF_K, 0, 0, 0),
        ]
        return program
    program += [
        (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 4, address),
        # X = IPv4 header length; A = UDP source port, just after the IP header
        (_BPF_LDX | _BPF_B | _BPF_MSH, 0, 0, _k(_SKF_NET_OFF)),
        (_BPF_LD | _BPF_H | _BPF_IND, 0, 0, _k(_SKF_NET_OFF)),
        (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 1, port),
        (_BPF_RET | _BPF_K, 0, 0, _ACCEPT),
        (_BPF_RET | _BPF_K, 0, 0, 0),
    ]
    return program


def _fprog(program: list[tuple[int, int, int, int]]) -> tuple[bytes, ctypes.Array[_SockFilter]]:
    filters = (_SockFilter * len(program))(*(_SockFilter(*op) for op in program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    return struct.pack("HL", len(program), ctypes.addressof(filters)), filters


def restrict_source(
    fd: int, ip: str, port: int | None = None, also: tuple[tuple[str, int], ...] = ()
) -> None:
    """Let socket ``fd`` receive only from ``ip`` (and ``port``) and the exact addresses of
    ``also``; replaces any earlier filter."""
    fprog, _keep = _fprog(source_program(ip, port, also))
    with socket.socket(fileno=os.dup(fd)) as sock:
        # The kernel copies the program during the call; _keep holds it until then.
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def lift_restriction(fd: int) -> None:
    with socket.socket(fileno=os.dup(fd)) as sock, contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_FILTER, 0)


def find_udp_socket(local_port: int) -> int | None:
    """The descriptor of this process's IPv4 UDP socket bound to ``local_port``.

    By port alone: a stack bound to 0.0.0.0 reports its public address as the local one.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.type != socket.SOCK_DGRAM or sock.family != socket.AF_INET:
                    continue
                if sock.getsockname()[1] == local_port:
                    return fd
        except OSError:
            continue
    return None


def split_address(text: str) -> tuple[str, int] | None:
    """``"1.2.3.4:5000"`` -> ``("1.2.3.4", 5000)``; None for empty, IPv6 or unspecified."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return None
    if address.is_unspecified or int(port) == 0:
        return None
    return host, int(port)


#: Addresses a caller behind NAT puts in its SDP: RFC 1918, CGNAT (RFC 6598), link-local
#: (the default of ``sip.nat_networks``).
NAT_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")


def nat_networks(texts: tuple[str, ...] = NAT_NETWORKS) -> tuple[ipaddress.IPv4Network, ...]:
    """``sip.nat_networks`` as networks (IPv4 CIDRs or single addresses); ValueError names
    the first entry that is neither."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.IPv4Network(text.strip()))
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
    return tuple(networks)


_DEFAULT_NETWORKS = nat_networks()


def is_private(ip: str, networks: tuple[ipaddress.IPv4Network, ...] = _DEFAULT_NETWORKS) -> bool:
    """An address only reachable behind a NAT (so RTP will come from elsewhere)."""
    address = ipaddress.IPv4Address(ip)
    return any(address in net for net in networks)


def expected_source(
    sdp_ip: str,
    sdp_port: int,
    signaling_ip: str,
    networks: tuple[ipaddress.IPv4Network, ...] = _DEFAULT_NETWORKS,
) -> tuple[str, int | None]:
    """Where a call's RTP may come from, before any has arrived.

    The address the caller's SDP names, exactly; unless that is a private address (one of
    ``networks``) other than the one its signalling came from (a caller behind NAT, whose
    packets come from the NAT's public address and a port nobody knows yet): then any port
    of the signalling address, until the first packet latches the exact source, which the
    agent's RTP then goes back to (symmetric RTP).
    """
    if sdp_ip != signaling_ip and is_private(sdp_ip, networks):
        return signaling_ip, None
    return sdp_ip, sdp_port
