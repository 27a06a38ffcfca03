"""baresip's configuration and account for the agent's ``[sip]`` settings.

What is chosen here, and why:
- no call limit in the stack (``max_concurrent_calls=None``): admission is the request
  gate's (503 + Retry-After), and a stack-side cap would answer 486 instead;
- UDP on ``sip.host:sip.port``, TCP on the same port only when an account registers over
  TCP (baresip would open both, and TLS on port + 1: the engine opens TLS itself, on
  ``sip.tls.port``);
- RTP within ``sip.rtp_port`` .. ``+ sip.rtp_port_range``;
- a fixed 20-60 ms jitter buffer: baresip's default holds caller audio 100 ms, which the
  model would hear as added latency;
- no video codecs on the account: otherwise baresip re-INVITEs every call it answers (to
  drop the video it offered), which callers that ignore in-dialog INVITEs answer with
  nothing and baresip then ends with a BYE after 32 s;
- one catch-all user agent: the request gate decides which numbers are answered (and one
  more per ``[[sip.accounts]]`` entry, ``agent.sip.baresip.accounts``);
- SDES-SRTP (``mediaenc``) on the catch-all user agent as ``sip.srtp`` says, and
  ``sip.stun_server`` as its media NAT (``medianat=stun``) on every user agent;
- the media clock's own thread-less audio source (``clock``, ``agent.sip.baresip.source``)
  and player (``discard``, ``agent.sip.baresip.player``);
- the stack's own ring timeout as a backstop only: the agent answers or refuses a ringing
  call well within ``sip.session_timeout_s``.
"""

from __future__ import annotations

import baresip

from agent.config import SipSettings, stun_host_port
from agent.sip.baresip import player, source
from agent.sip.baresip.accounts import MEDIAENC
from agent.sip.baresip.gate import STACK_CODECS

#: The stack ends a call still ringing after this long (the agent does it much earlier).
RING_BACKSTOP_S = 60
JITTER_BUFFER_MS = "20-60"


def transports(settings: SipSettings) -> str:
    """baresip's ``sip_transports``: UDP, and TCP when an account registers over it."""
    if any(account.transport == "tcp" for account in settings.accounts):
        return "udp,tcp"
    return "udp"


def runtime_config(settings: SipSettings, port: int) -> baresip.Config:
    last_rtp = settings.rtp_port + settings.rtp_port_range - 1
    ring_s = max(RING_BACKSTOP_S, int(settings.session_timeout_s) + 30)
    return baresip.Config(
        # A wildcard is no interface: baresip then found no local address at all and
        # opened no SIP socket. Without one it discovers every interface's.
        net_interface=None if settings.host in ("", "0.0.0.0", "::") else settings.host,
        max_concurrent_calls=None,
        native_log_level="warning",
        rtp_timeout=0,
        expose_headers=("To",),
        extra_config_text=(
            f"sip_listen {settings.host}:{port}\n"
            f"sip_transports {transports(settings)}\n"
            f"rtp_ports {settings.rtp_port}-{last_rtp}\n"
            f"call_local_timeout {ring_s}\n"
            "audio_jitter_buffer_type fixed\n"
            f"audio_jitter_buffer_ms {JITTER_BUFFER_MS}\n"
        ),
    )


def medianat(settings: SipSettings) -> tuple[str, ...]:
    """The account parameters that make baresip ask ``sip.stun_server`` for each call's
    public RTP address (its ``stun`` media NAT module); none without a server."""
    server = stun_host_port(settings.stun_server) if settings.stun_server else None
    if server is None:
        return ()
    return ("medianat=stun", f"stunserver=stun:{server[0]}:{server[1]}")


def media_params(settings: SipSettings) -> tuple[str, ...]:
    """The account parameters of every user agent's calls: the media clock's thread-less
    source (``agent.sip.baresip.source``) and player (``agent.sip.baresip.player``) instead
    of baresip-python's, which run a thread per call each, and the media NAT."""
    # "module,device": neither has devices, the comma is still required.
    return (f"audio_source={source.NAME},", f"audio_player={player.NAME},", *medianat(settings))


def account(settings: SipSettings, port: int) -> str:
    """The address-of-record line of the process's own user agent."""
    aor = baresip.Account(
        user=settings.user,
        domain=f"{settings.host}:{port}",
        password="",
        reg_interval=0,
        transport="udp",
        audio_codecs=tuple(STACK_CODECS[codec] for codec in settings.codecs),
        dtmf_mode="rtpevent",
        # catchall: INVITEs to any user part reach this agent; which numbers are answered is
        # the request gate's routing (agent.sip.routing), baresip would 404 all but sip.user.
        extra_params=(
            "video_codecs",
            "catchall=yes",
            *MEDIAENC[settings.srtp],
            *media_params(settings),
        ),
    ).aor()
    # Without a transport in its URI: baresip hands a user agent only the INVITEs of its
    # URI's transport, and this one takes calls over UDP, TCP and TLS alike.
    return aor.replace(";transport=udp>", ">", 1)
