"""Symmetric RTP on baresip: the agent's RTP goes back to where a NAT-ed caller's comes from.

baresip sends a call's RTP to the address the SDP names and never follows the source. A caller
behind NAT names a private address (``sip.nat_networks``), which the agent cannot reach; its
packets come from the NAT's public address, from a port only the first packet tells. For such
a call (``expected_source`` gave the signalling address and no port), :class:`MediaLatch`:

- watches the call's RTP and RTCP sockets for the first datagram the stack takes as media
  (``native.watch_media_source``). On the re thread, as that datagram arrives, it narrows the
  kernel filter to its exact source and points the stream's sending there
  (``native.set_media_destination``), so the caller hears the agent from the next packet on;
- puts the latched source back after each re-INVITE, whose SDP makes baresip send to the
  private address again (``reapply``);
- forgets the latch when a new SDP names an address the agent can reach, or the call ends.

Only a source on the caller's signalling address gets this far (the filter admits no other),
so a stranger elsewhere cannot steal the call's audio; after the latch, not even another port
of that address can.
"""

from __future__ import annotations

import asyncio
from functools import partial

import structlog

from agent.sip.baresip import native
from agent.sip.rtp_filter import restrict_source

Address = tuple[str, int]


class MediaLatch:
    """One call's symmetric RTP (its methods on the loop thread unless marked *re thread*)."""

    def __init__(
        self,
        executor: native.ReThreadExecutor,
        log: structlog.stdlib.BoundLogger,
        filter_also: tuple[Address, ...] = (),
    ) -> None:
        self._executor = executor
        self.log = log
        #: Sources the filter lets through besides the caller (the STUN server).
        self._also = filter_also
        self._loop = asyncio.get_running_loop()
        #: The latched RTP and RTCP sources (None until their first datagram).
        self.rtp: Address | None = None
        self.rtcp: Address | None = None
        self._watches: list[int] = []

    async def follow(self, call_id: str, media: native.CallMedia, signalling_ip: str) -> None:
        """After each negotiation of a NAT-ed call: watch for its first media, or (already
        latched onto its signalling address) send there again."""
        if self.rtp is not None and self.rtp[0] != signalling_ip:
            self.forget()  # a new signalling address: latch afresh
        if self.rtp is not None:
            await self._executor.run(lambda: self._reapply(call_id, media))
            return
        if self._watches:
            return  # still waiting for the first datagram
        await self._executor.run(lambda: self._watch(call_id, media))

    def forget(self) -> None:
        """The caller is no longer behind NAT, or the call ended."""
        for key in self._watches:
            native.forget_media_watch(key)
        self._watches.clear()
        self.rtp = self.rtcp = None

    # -- re thread ---------------------------------------------------------------------------
    def _watch(self, call_id: str, media: native.CallMedia) -> None:
        for rtcp, fd in ((False, media.rtp_fd), (True, media.rtcp_fd)):
            if fd < 0:
                continue
            on_source = partial(self._latch, call_id, rtcp, fd)
            key = native.watch_media_source(call_id, rtcp, on_source)
            if key is not None:
                self._watches.append(key)

    def _latch(self, call_id: str, rtcp: bool, fd: int, source: Address) -> None:
        restrict_source(fd, source[0], source[1], self._also)
        if rtcp:
            self.rtcp = source
            moved = native.set_media_destination(call_id, None, source)
        else:
            self.rtp = source
            moved = native.set_media_destination(call_id, source, None)
        self._loop.call_soon_threadsafe(self._report, rtcp, source, moved)

    def _reapply(self, call_id: str, media: native.CallMedia) -> None:
        for source, fd in ((self.rtp, media.rtp_fd), (self.rtcp, media.rtcp_fd)):
            if source is not None and fd >= 0:
                restrict_source(fd, source[0], source[1], self._also)
        if not native.set_media_destination(call_id, self.rtp, self.rtcp):
            self._loop.call_soon_threadsafe(self.log.warning, "rtp_latch_unavailable")

    # -- loop thread -------------------------------------------------------------------------
    def _report(self, rtcp: bool, source: Address, moved: bool) -> None:
        address = f"{source[0]}:{source[1]}"
        if not moved:
            # The filter follows the source; the stack still sends to the SDP's address.
            self.log.warning("rtp_latch_unavailable", address=address)
        elif rtcp:
            self.log.info("rtcp_source_latched", address=address)
        else:
            self.log.info("rtp_source_latched", address=address)
