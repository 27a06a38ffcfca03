"""Typed settings: ``config/*.toml`` profile, then environment (and ``.env``) for secrets.

The TOML file holds everything that is not secret; keys, endpoints and deployments come from
the environment, which python-dotenv fills from ``.env`` without overriding what is already
set. Unknown keys and wrongly typed values are errors: a typo in a telephony config should stop
the process at start, not silently change behaviour on a live call.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from agent.outbound.amd_settings import ON_MACHINE, AmdSettings
from agent.realtime.models import (
    DEFAULT_DELEGATION_MODEL,
    DEFAULT_LIVE_MODEL,
    DEFAULT_REALTIME_MODEL,
    DEFAULT_TRANSCRIPTION_MODEL,
)
from agent.sip.rtp_filter import NAT_NETWORKS, nat_networks

#: pjsua2-python is compiled with PJSUA_MAX_CALLS=4. pjsua itself answers 486 once every slot is
#: taken; the request gate (agent/sip/pjsip/gate.py) answers INVITEs beyond capacity with our
#: own 503 + Retry-After before pjsua spends a slot on them, so all four carry calls.
PJSUA_CALL_SLOTS = 4
#: The SIP engines (agent/sip/engines.py).
SIP_ENGINES = ("baresip", "pjsip")
#: The most calls ``sip.max_calls`` may ask of one process, per engine: pjsua2's call slots;
#: baresip has no slots, and one process carried 200 calls on 2 cores (README "SIP engines").
ENGINE_MAX_CALLS = {"pjsip": PJSUA_CALL_SLOTS, "baresip": 1000}
#: The default capacity: the pjsua2 wheel's slots, which both engines can carry (so either
#: engine runs with the default profile; raise it on baresip).
MAX_CALLS_PER_PROCESS = PJSUA_CALL_SLOTS
#: Codecs ``sip.codecs`` may list (G.722 is 16 kHz wideband).
SIP_CODECS = ("G722", "PCMU", "PCMA")

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "agent.toml"


class ConfigError(Exception):
    """Bad configuration: reported as one line, exit status 2."""


#: Transports a ``[[sip.accounts]]`` entry may register over.
SIP_TRANSPORTS = ("udp", "tcp", "tls")
#: SDES-SRTP policies: "off" (plain RTP), "optional" (SRTP when offered), "mandatory".
SRTP_POLICIES = ("off", "optional", "mandatory")


@dataclass(frozen=True)
class AccountSettings:
    """One ``[[sip.accounts]]`` entry: a registrar or trunk the agent registers to."""

    #: Names the account in logs, ``voice-agent check`` and ``[[routes]]`` (``account =``).
    name: str = ""
    #: The registrar's SIP URI, e.g. "sip:sip.example-trunk.net" or "sip:10.0.0.5:5060".
    registrar: str = ""
    #: The user to register as (the AOR's user part and the digest user name).
    username: str = ""
    #: The environment variable holding the password (never the file).
    password_env: str = ""
    #: "udp", "tcp" or "tls" (``[sip.tls]``; a ``sips:`` registrar needs "tls").
    transport: str = "udp"
    #: The registration lifetime asked for; it is refreshed before it runs out.
    expires_s: int = 300
    #: SDES-SRTP for calls this account delivers; "" = ``sip.srtp``.
    srtp: str = ""


@dataclass(frozen=True)
class PeerSettings:
    """One ``[[sip.peers]]`` entry: a caller that proves who it is with digest auth."""

    #: Names the peer in logs and ``[[routes]]`` (``account =``).
    name: str = ""
    username: str = ""
    #: The environment variable holding the peer's password.
    password_env: str = ""


@dataclass(frozen=True)
class TlsSettings:
    """``[sip.tls]``: the TLS transport, opened when an account registers over TLS or a
    certificate is set (then it also takes calls over TLS)."""

    port: int = 5061
    #: Our certificate chain and key (PEM): needed to take TLS connections; "" = client only.
    cert_file: str = ""
    key_file: str = ""
    #: CA certificates (PEM) that verify the far end's; "" = OpenSSL's default locations.
    ca_file: str = ""
    #: Refuse a registrar or trunk whose certificate does not verify (and match its name).
    verify_server: bool = True


@dataclass(frozen=True)
class SipSettings:
    #: The SIP stack (agent/sip/engines.py): baresip, the one that meets the capacity targets
    #: (README "SIP engines").
    engine: str = "baresip"
    host: str = "127.0.0.1"
    port: int = 5060
    public_host: str = ""
    #: A STUN server ("host" or "host:port", port 3478 by default) that tells each call's
    #: RTP sockets their public address, for the SDP (baresip engine only); "" = none.
    stun_server: str = ""
    #: SDP addresses that mark a caller as behind NAT when its signalling comes from another
    #: address: its RTP is taken from any port of the signalling address, and the agent's RTP
    #: goes back to where the first packet came from (symmetric RTP).
    nat_networks: tuple[str, ...] = NAT_NETWORKS
    user: str = "agent"
    max_calls: int = MAX_CALLS_PER_PROCESS
    #: New calls get 503 while the event loop's thread has been busier than this share of
    #: the last second (its CPU time over wall time; ``agent.observe.loop_load``): every
    #: call's audio runs on that thread, and one call too many degrades them all. 1.0: off.
    max_loop_busy: float = 0.9
    retry_after_s: int = 30
    #: G.722 first: wideband whenever the caller offers it.
    codecs: tuple[str, ...] = ("G722", "PCMU", "PCMA")
    rtp_port: int = 4000
    rtp_port_range: int = 200
    session_timeout_s: float = 5.0
    #: An answered call whose ACK has not come within this long is ended (spoofed INVITEs).
    ack_timeout_s: float = 5.0
    #: A call that receives no RTP for this long (not on hold) is ended; 0 = never.
    rtp_timeout_s: float = 30.0
    #: On SIGTERM, how long calls in progress may run on before they are ended.
    drain_timeout_s: float = 30.0
    #: Source addresses or CIDRs whose calls are taken without authentication (IP-
    #: authenticated trunks, a PBX); the default is this machine only.
    allow_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    accounts: tuple[AccountSettings, ...] = ()
    peers: tuple[PeerSettings, ...] = ()
    tls: TlsSettings = field(default_factory=TlsSettings)
    #: SDES-SRTP: "off" (plain RTP), "optional" (SRTP when the caller offers it) or
    #: "mandatory" (a plain-RTP offer gets 488).
    srtp: str = "off"


@dataclass(frozen=True)
class HttpSettings:
    """``[http]``: the agent's one HTTP listener (health, readiness, metrics)."""

    host: str = "127.0.0.1"
    port: int = 8060


@dataclass(frozen=True)
class OutboundSettings:
    """``[outbound]``: calls the agent places (``voice-agent call``, the HTTP API) and the
    toll-fraud guard in front of them (``agent.outbound.policy``)."""

    #: Regular expressions; a target (E.164 number or SIP URI, as given) must match one in
    #: full. Empty: no outbound call is allowed.
    allow: tuple[str, ...] = ()
    #: Patterns that also let premium-rate and international targets through (the built-in
    #: deny list's explicit opt-in); a target matching one needs no ``allow`` pattern.
    allow_restricted: tuple[str, ...] = ()
    #: Per ``[[sip.accounts]]`` name: patterns a call through that account must also match.
    account_allow: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The country code numbers are domestic in (digits, e.g. "49"); other numbers are
    #: international. "": every number is international.
    home_country_code: str = ""
    #: Outbound calls in progress at once (per process).
    max_concurrent: int = 2
    #: Calls to one destination in any 24 hours (0: no cap); counted in the ledger file.
    max_per_destination_per_day: int = 3
    #: The ledger of calls per destination; "" = ``<records.dir>/outbound-ledger.json``.
    ledger_file: str = ""
    #: CANCEL a call still ringing after this long (the default of ``--ring-timeout``).
    ring_timeout_s: float = 30.0
    #: The number (From user part) calls are placed from; "" = the account's username, or
    #: ``sip.user`` for a SIP URI dialled directly.
    from_number: str = ""
    #: The ``[profiles.NAME]`` outbound calls use unless one is asked for; "" = the base.
    profile: str = ""
    #: The HTTP control API (``/v1/calls`` on the ``[http]`` listener); off by default.
    api: bool = False
    #: The environment variable holding the API's bearer token (required with ``api``).
    api_token_env: str = ""
    #: ``[outbound.amd]``: answering-machine detection before the agent speaks.
    amd: AmdSettings = field(default_factory=AmdSettings)


@dataclass(frozen=True)
class TurnDetection:
    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int = 0
    eagerness: str = "auto"
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True)
class PromptReference:
    """A stored prompt (GA only): ``{id, version, variables}``.

    Variable values may use ``{caller}``, ``{dialed}`` and ``{call_id}``, filled in per call.
    """

    id: str = ""
    version: str = ""
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentProfile:
    instructions: str = (
        "You are a friendly, concise phone agent. Keep answers short: this is a phone call."
    )
    voice: str = "marin"
    greeting: str = "Greet the caller in one short sentence and ask how you can help."
    #: What the model is told to say when an outbound call reaches an answering machine and
    #: ``outbound.amd.on_machine`` is "message" (spoken after the beep; then the agent hangs up).
    voicemail_instructions: str = (
        "You reached an answering machine and it is recording now. Leave a short message: "
        "say who is calling and why, and how to call back. Then say goodbye."
    )
    #: Transcribe the caller's turns with this model; "" = off. The local backend transcribes
    #: every turn anyway; a cloud backend bills the transcription on top of the session.
    input_transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL
    #: A barge-in trigger while the agent talks cuts it only once this much caller audio
    #: louder than ``min_barge_in_dbfs`` was measured locally (0 = at once). Shorter bursts
    #: (coughs, "uh-huh", line noise, echo) are ignored and counted. Formerly echo_guard_ms.
    min_barge_in_ms: int = 0
    min_barge_in_dbfs: float = -40.0
    #: Seconds without caller speech before "are you still there?", and as long again
    #: before the goodbye and hang-up (0 = never).
    silence_hangup_s: float = 0.0
    #: Longest call in seconds (0 = no limit); a goodbye ``max_call_goodbye_s`` before it.
    max_call_s: float = 0.0
    max_call_goodbye_s: float = 30.0
    #: Sampling temperature, beta dialect only (0.6-1.2); 0 leaves the server default.
    temperature: float = 0.0
    #: Cap on output tokens per response; 0 leaves the server default ("inf").
    max_output_tokens: int = 0
    #: Input noise reduction: "" (off), "near_field" (handsets) or "far_field" (speakerphones).
    noise_reduction: str = ""
    #: Its strength, 0..1 (GA); 0 leaves the server's (1 when first enabled).
    noise_reduction_strength: float = 0.0
    #: Speaking rate of the output voice, 0.25..1.5 (GA); 1.0 is the server's normal speed.
    speed: float = 1.0
    #: Reasoning effort of reasoning Realtime models (gpt-realtime-2 and later, GA): "" leaves
    #: the server default, else minimal | low | medium | high | xhigh.
    reasoning_effort: str = ""
    #: What the server drops when the conversation outgrows the context (GA): "" (server
    #: default), "auto", "disabled" or "retention_ratio" (keep ``truncation_retention_ratio``).
    truncation: str = ""
    truncation_retention_ratio: float = 0.8
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    prompt: PromptReference = field(default_factory=PromptReference)


@dataclass(frozen=True)
class RealtimeSettings:
    #: "realtime" (the Realtime API, GA or beta dialect) or "live" (GPT-Live, see [live]).
    protocol: str = "realtime"
    #: How the session is reached: "websocket" (events and base64 audio on one socket) or
    #: "webrtc" (an SDP exchange over HTTP, then Opus media tracks and a data channel).
    transport: str = "websocket"
    provider: str = "auto"
    model: str = DEFAULT_REALTIME_MODEL
    url: str = ""
    #: For provider "custom" over WebRTC: where the SDP offer goes ("" = ``<url path>/calls``
    #: on the same host, as OpenAI lays it out; GPT-Live: ``url``'s own path over http(s)).
    webrtc_url: str = ""
    dialect: str = ""
    azure_api_version: str = ""
    connect_timeout_s: float = 5.0
    #: When the session drops mid-call: how often to open a new one before hanging up.
    reconnect_attempts: int = 1
    #: A session is replaced by a new one, carrying the conversation over, before it has run
    #: this long (the Realtime API ends sessions at 60 minutes; GPT-Live says when in
    #: ``expires_at``, and the earlier of the two counts).
    max_session_s: float = 3600.0


@dataclass(frozen=True)
class LiveSettings:
    """``[live]``: GPT-Live sessions (``realtime.protocol = "live"``)."""

    #: The GPT-Live model (OpenAI) or deployment (Azure): gpt-live-1.1 or gpt-live-1.
    model: str = DEFAULT_LIVE_MODEL
    #: How long GPT-Live waits on delegated work before it says a short acknowledgement
    #: ("one moment"); 0 leaves the server's default.
    acknowledgement_delay_ms: int = 0
    #: The model that does delegated work (tools) over Responses WebSocket mode.
    delegation_model: str = DEFAULT_DELEGATION_MODEL
    #: What the delegation model is told, before the profile's instructions.
    delegation_instructions: str = (
        "You do the work a phone agent delegates to you: pick and call the tools the caller's "
        "request needs, then answer in one or two short spoken sentences for the agent to say."
    )
    #: The Responses WebSocket URL for delegated work; "" is the provider's own.
    delegation_url: str = ""
    #: Delegated work (every model round and tool call) must finish within this many seconds.
    delegation_timeout_s: float = 30.0
    #: Azure only: the path of GPT-Live on the resource (Microsoft's docs show both forms).
    azure_path: str = "/openai/v1/live/sessions"


@dataclass(frozen=True)
class AudioSettings:
    resampler_quality: str = "LQ"
    append_batch_ms: int = 20
    #: Send G.711 to the model as is (session format audio/pcmu or audio/pcma) when the call's
    #: codec matches: no resampling and no resampler delay, at the model's 8 kHz input quality.
    g711_passthrough: bool = False
    #: Niceness of the event loop thread on the baresip engine, whose media ticker there paces
    #: every call's audio (-20..0; 0 leaves the scheduler alone): ahead of the SIP stack's
    #: threads when the cores run short. PJSIP paces with its own clock thread: not used.
    loop_nice: int = -10


@dataclass(frozen=True)
class RecordSettings:
    #: Directory for per-call transcripts (JSONL), call records (JSON) and recordings (WAV);
    #: "" writes none of them.
    dir: str = "records"
    #: One stereo WAV per call (caller left, agent right, at the call's rate).
    recording: bool = False
    #: Call files older than this many days are deleted at start and daily; 0 keeps them.
    retention_days: int = 0
    #: A WAV file played to the caller on answer, before the agent greets ("" for none).
    recording_notice: str = ""


@dataclass(frozen=True)
class WebhookSettings:
    """``[webhook]``: the post-call webhook and the pre-call lookup hook."""

    #: Each answered call's record and transcript are POSTed here as JSON; "" = off.
    url: str = ""
    #: The environment variable holding the HMAC secret that signs every request (required
    #: with ``url`` or ``lookup_url``: the secret itself never goes in the profile).
    secret_env: str = ""
    #: One delivery attempt (connect, send, answer) must finish within this long.
    timeout_s: float = 10.0
    #: The first retry comes this long after a failed attempt; each next one twice as long
    #: after the last, up to ``max_retry_s`` between attempts.
    first_retry_s: float = 2.0
    max_retry_s: float = 600.0
    #: A delivery still failing this many hours after the call is given up (moved to
    #: ``failed/`` in the outbox, kept for a manual replay).
    retry_for_h: float = 72.0
    #: Where deliveries wait until a receiver took them; "" is ``<records.dir>/outbox``.
    outbox_dir: str = ""
    #: At most this many deliveries wait in the outbox; later calls' are not queued (logged).
    max_pending: int = 10000
    #: At ring time, before the call is answered, POST the caller and dialed numbers here;
    #: the JSON answer may pick one of [profiles] and fill variables. "" = off.
    lookup_url: str = ""
    #: The lookup's answer must come within this long, or the call goes on with [agent].
    lookup_timeout_ms: int = 800


@dataclass(frozen=True)
class LogSettings:
    format: str = "console"
    level: str = "info"


@dataclass(frozen=True)
class LocalSettings:
    """``[local]``: the embedded backend used when no cloud provider is configured."""

    #: "voice" (offline VAD, speech-to-text, scripted brain, text-to-speech) or "synthetic"
    #: (a voice-like tone, no models: for load tests).
    backend: str = "voice"
    #: The brain's script (TOML); "" is the shipped config/local_brain.toml.
    brain: str = ""


#: Built-in tools a profile can enable (agent/tools/builtins.py).
BUILTIN_TOOLS = ("end_call", "transfer_call", "send_dtmf")
DTMF_DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True)
class CustomToolSettings:
    """One ``[[tools.custom]]`` entry: an operator's Python callable offered to the model."""

    #: "module:function", sync or async; the module is looked up on ``tools.python_path`` too.
    function: str = ""
    #: The name the model sees (default: the function's name).
    name: str = ""
    #: What the model reads about the tool (default: the function's docstring).
    description: str = ""
    #: JSON schema of the arguments, as JSON text (default: derived from the type hints).
    parameters: str = ""


@dataclass(frozen=True)
class McpServerSettings:
    """One ``[[tools.mcp]]`` entry: an MCP server whose tools are offered to the model."""

    #: Names the server in logs and transcripts.
    name: str = ""
    #: stdio transport: the command and its arguments, e.g. ["uv", "run", "crm-mcp"].
    command: tuple[str, ...] = ()
    #: Streamable-HTTP transport: the server's URL (use either ``command`` or ``url``).
    url: str = ""
    #: Environment variables passed from the agent's environment to a stdio server (secrets
    #: stay in the environment, never in the profile).
    env_passthrough: tuple[str, ...] = ()
    #: Only these of the server's tools are offered (empty: all of them).
    include: tuple[str, ...] = ()
    #: Prepended to the server's tool names, e.g. "crm_", to keep names unique.
    prefix: str = ""
    #: How long connecting and listing tools may take at call start.
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class ServerMcpSettings:
    """One ``[[tools.server_mcp]]`` entry: an MCP server the Realtime model calls itself
    (``type: "mcp"`` in the session's tools; GA only). The agent never sees these calls'
    traffic, only their outcome."""

    #: Names the server to the model and in logs.
    server_label: str = ""
    #: The server's URL (https://).
    server_url: str = ""
    #: What the model reads about the server.
    description: str = ""
    #: HTTP headers for the server, each read from an environment variable at call start
    #: (header name -> variable name), so tokens stay out of the profile.
    headers_env: dict[str, str] = field(default_factory=dict)
    #: "never": the model calls the tools freely; "always": every call waits for approval,
    #: which the agent gives only to the tools in ``approve`` (nobody on a phone line can).
    require_approval: str = "never"
    approve: tuple[str, ...] = ()
    #: Only these of the server's tools (empty: all of them).
    allowed_tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolSettings:
    """``[tools]``: function calling, built-in call control, caller DTMF, custom and MCP tools."""

    builtin: tuple[str, ...] = ("end_call",)
    #: Default time limit of one tool call; the model gets an error output when it passes.
    timeout_s: float = 10.0
    #: Per-tool time limits (tool name -> seconds), overriding ``timeout_s``.
    timeouts: dict[str, float] = field(default_factory=dict)
    #: What the caller hears while tool calls run longer than ``filler_after_ms``: "tone" (a
    #: soft thinking sound), "spoken" (a short holding line from the model) or "" (nothing).
    filler: str = "tone"
    filler_after_ms: int = 1500
    #: Per-tool argument names whose values never reach logs or transcripts.
    redact: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Tool outputs longer than this are cut before the model sees them.
    max_output_chars: int = 4000
    #: The only places transfer_call can send a call to (name -> SIP URI).
    transfer_destinations: dict[str, str] = field(default_factory=dict)
    #: The agent holds the caller (re-INVITE a=sendonly, music on hold) before the REFER, and
    #: resumes the call (a=sendrecv) when the transfer fails (RFC 5589 basic transfer).
    transfer_hold: bool = True
    #: The music a caller on the agent's hold hears: a 16-bit WAV (mono or stereo, any rate,
    #: at most 300 s, looped); "" = the built-in gentle loop.
    music_on_hold: str = ""
    #: Caller digits handled without the model: "end_call" or "transfer_call:<name>".
    dtmf_actions: dict[str, str] = field(default_factory=dict)
    #: Tell the model which keys the caller pressed.
    dtmf_to_model: bool = True
    #: Digits pressed within this time of each other reach the model as one message.
    dtmf_batch_ms: int = 1200
    #: send_dtmf only sends digit strings matching this regular expression in full.
    send_dtmf_pattern: str = "[0-9*#]{1,20}"
    #: Extra directories searched for custom tool modules (relative: to the working directory).
    python_path: tuple[str, ...] = ()
    custom: tuple[CustomToolSettings, ...] = ()
    mcp: tuple[McpServerSettings, ...] = ()
    server_mcp: tuple[ServerMcpSettings, ...] = ()


@dataclass(frozen=True)
class RouteSettings:
    """One ``[[routes]]`` entry: calls it matches use ``profile``. Each field set must match
    (shell-style patterns: ``*``, ``?``, ``[...]``); the first matching route wins."""

    #: The dialed number (Request-URI user, or the To user when the Request-URI names us),
    #: in E.164 when it is an international number: "+15550001", "+1555*".
    dialed: str = ""
    #: The caller's number (P-Asserted-Identity from a trusted source, else From).
    caller: str = ""
    #: The ``[[sip.accounts]]`` or ``[[sip.peers]]`` name the call came in on.
    account: str = ""
    #: A ``[profiles.NAME]`` name.
    profile: str = ""
    #: "mandatory": a plain-RTP offer on this route gets 488 (needs sip.srtp or the account's
    #: srtp at "optional" or "mandatory"); "" = as the account or ``sip.srtp`` says.
    srtp: str = ""


@dataclass(frozen=True)
class CallProfile:
    """A ``[profiles.NAME]`` resolved over the base profile: what a routed call uses."""

    agent: AgentProfile = field(default_factory=AgentProfile)
    tools: ToolSettings = field(default_factory=ToolSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)


@dataclass(frozen=True)
class Secrets:
    """Values read from the environment only; never from the TOML file, never logged."""

    openai_api_key: str = ""
    azure_api_key: str = ""
    azure_endpoint: str = ""
    azure_deployment: str = ""
    azure_api_version: str = ""
    realtime_api_key: str = ""
    #: The value of the variable that ``webhook.secret_env`` names.
    webhook_secret: str = ""
    #: The outbound API's bearer token (from ``outbound.api_token_env``).
    outbound_api_token: str = ""
    #: SIP passwords, by the environment variable each ``password_env`` names.
    sip_passwords: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        present = [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]
        return f"Secrets(set={present})"


@dataclass(frozen=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    agent: AgentProfile = field(default_factory=AgentProfile)
    audio: AudioSettings = field(default_factory=AudioSettings)
    log: LogSettings = field(default_factory=LogSettings)
    records: RecordSettings = field(default_factory=RecordSettings)
    tools: ToolSettings = field(default_factory=ToolSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    routes: tuple[RouteSettings, ...] = ()
    #: The profile of a call no route matches; "" answers such calls 404.
    default_profile: str = ""
    #: Set by ``load_settings`` from ``[profiles.NAME]`` tables (see ``agent.profiles``): each
    #: inherits every key it leaves out from [agent], [tools] and [realtime]. ``[[routes]]``
    #: choose among them, and so may the pre-call lookup (``webhook.lookup_url``).
    profiles: dict[str, CallProfile] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets, repr=False)


_CHOICES: dict[str, tuple[str, ...]] = {
    "sip.engine": SIP_ENGINES,
    "realtime.protocol": ("realtime", "live"),
    "realtime.transport": ("websocket", "webrtc"),
    "sip.accounts.transport": SIP_TRANSPORTS,
    "sip.accounts.srtp": ("", *SRTP_POLICIES),
    "sip.srtp": SRTP_POLICIES,
    "routes.srtp": ("", "mandatory"),
    "realtime.provider": ("auto", "openai", "azure", "custom", "local"),
    "realtime.dialect": ("", "ga", "beta"),
    "agent.turn_detection.type": ("server_vad", "semantic_vad", "none"),
    "agent.turn_detection.eagerness": ("auto", "low", "medium", "high"),
    "agent.noise_reduction": ("", "near_field", "far_field"),
    "agent.reasoning_effort": ("", "minimal", "low", "medium", "high", "xhigh"),
    "agent.truncation": ("", "auto", "disabled", "retention_ratio"),
    "audio.resampler_quality": ("QQ", "LQ", "MQ", "HQ", "VHQ"),
    "log.format": ("console", "json"),
    "log.level": ("debug", "info", "warning", "error"),
    "local.backend": ("voice", "synthetic"),
    "tools.filler": ("", "tone", "spoken"),
    "outbound.amd.on_machine": ON_MACHINE,
}

#: Keys that were renamed: old name -> new name (in the same table). A profile may use
#: either, not both.
_RENAMED = {
    "agent.echo_guard_ms": "min_barge_in_ms",
    "agent.echo_guard_dbfs": "min_barge_in_dbfs",
}


def _renamed(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    data = dict(data)
    for old, new in _RENAMED.items():
        table, _, key = old.rpartition(".")
        if table != prefix or key not in data:
            continue
        if new in data:
            raise ConfigError(f"{old}: the former name of {table}.{new}; set only one of them")
        data[new] = data.pop(key)
    return data


def _choice_key(where: str) -> str:
    """The ``_CHOICES`` key of ``where``: list indexes dropped (``sip.accounts[0].transport``),
    and a named profile's own keys are [agent]'s."""
    where = re.sub(r"\[\d+\]", "", where)
    if where.startswith("profiles."):
        _, _, rest = where[len("profiles.") :].partition(".")
        section, _, key = rest.partition(".")
        if section in PROFILE_SECTIONS and key:
            return rest
        return f"agent.{rest}"
    return where


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        (_, value_tp) = typing.get_args(tp)
        return {str(k): _coerce(value_tp, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is types.UnionType:
        raise ConfigError(f"{where}: unsupported type")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    choices = _CHOICES.get(_choice_key(where))
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    data = _renamed(data, prefix)
    # Fields kept out of repr (the secrets) are not the file's to set: never offer them.
    names = {f.name for f in dataclasses.fields(cls) if f.repr}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"[{prefix}] " if prefix else ""
        raise ConfigError(f"{where}unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {
        key: _coerce(hints[key], value, f"{prefix}.{key}" if prefix else key)
        for key, value in data.items()
    }
    return cls(**kwargs)


#: The STUN port when ``sip.stun_server`` names none (RFC 5389).
STUN_PORT = 3478


def stun_host_port(text: str) -> tuple[str, int] | None:
    """``sip.stun_server`` as (host, port); None when it is neither "host" nor "host:port"."""
    host, sep, port = text.strip().partition(":")
    if not host or any(c in host for c in " /@[]"):
        return None
    if not sep:
        return host, STUN_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def _validate(settings: Settings) -> None:
    sip = settings.sip
    bound = ENGINE_MAX_CALLS[sip.engine]
    if not 1 <= sip.max_calls <= bound:
        why = (
            f"the pjsua2 wheel has {PJSUA_CALL_SLOTS} call slots; use the baresip engine or "
            "more agent processes behind a dispatcher for more calls"
            if sip.engine == "pjsip"
            else "run more agent processes behind a dispatcher for more calls"
        )
        raise ConfigError(
            f"sip.max_calls: {sip.max_calls} is outside 1..{bound} on the {sip.engine} engine "
            f"({why})"
        )
    if sip.rtp_port_range < 2 * sip.max_calls:
        raise ConfigError(
            f"sip.rtp_port_range: {sip.rtp_port_range} ports cannot carry {sip.max_calls} "
            "calls (each takes an RTP and an RTCP port)"
        )
    if not 0.0 < sip.max_loop_busy <= 1.0:
        raise ConfigError("sip.max_loop_busy: must be above 0 and at most 1 (1: off)")
    if not 0.5 <= sip.ack_timeout_s <= 32:
        raise ConfigError("sip.ack_timeout_s: must be between 0.5 and 32 (SIP's own limit)")
    if sip.rtp_timeout_s < 0:
        raise ConfigError("sip.rtp_timeout_s: must be 0 (never) or positive")
    if not 0 <= sip.port <= 65535:
        raise ConfigError(f"sip.port: {sip.port} is not a UDP port")
    if sip.stun_server and stun_host_port(sip.stun_server) is None:
        raise ConfigError(
            f"sip.stun_server: {sip.stun_server!r} is not host or host:port (IPv4 or a name)"
        )
    try:
        nat_networks(sip.nat_networks)
    except ValueError as exc:
        raise ConfigError(f"sip.nat_networks: {exc} (IPv4 addresses or CIDRs)") from None
    if sip.drain_timeout_s < 0:
        raise ConfigError("sip.drain_timeout_s: must be 0 (end calls at once) or positive")
    if not 0 <= settings.http.port <= 65535:
        raise ConfigError(f"http.port: {settings.http.port} is not a TCP port")
    for codec in sip.codecs:
        if codec not in SIP_CODECS:
            raise ConfigError(
                f"sip.codecs: {codec!r} is not supported (use {', '.join(SIP_CODECS)})"
            )
    if not sip.codecs:
        raise ConfigError(f"sip.codecs: at least one of {', '.join(SIP_CODECS)} is needed")
    _validate_profile(settings.agent, "agent")
    for name, profile in settings.profiles.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ConfigError(f"profiles: {name!r} is not a simple name")
        _validate_profile(profile.agent, f"profiles.{name}")
        if profile.realtime.max_session_s < 120:
            raise ConfigError(f"profiles.{name}.realtime.max_session_s: must be at least 120")
    _validate_webhook(settings.webhook, settings.records, settings.secrets)
    if settings.audio.append_batch_ms not in (20, 40):
        raise ConfigError("audio.append_batch_ms: must be 20 or 40")
    if not -20 <= settings.audio.loop_nice <= 0:
        raise ConfigError("audio.loop_nice: must be between -20 and 0")
    _validate_session_extras(settings)
    _validate_records(settings.records)
    _validate_amd(settings)


#: ``[outbound.amd]`` keys and the range each must lie in.
_AMD_RANGES: dict[str, tuple[float, float]] = {
    "max_detect_ms": (1000, 30000),
    "machine_speech_ms": (500, 10000),
    "human_silence_ms": (200, 5000),
    "speech_dbfs": (-90.0, 0.0),
    "speech_snr_db": (0.0, 40.0),
    "beep_wait_ms": (0, 120000),
    "beep_min_ms": (60, 2000),
    "end_silence_ms": (200, 10000),
    "message_max_ms": (1000, 600000),
}


def _validate_amd(settings: Settings) -> None:
    amd = settings.outbound.amd
    for key, (low, high) in _AMD_RANGES.items():
        value = getattr(amd, key)
        if not low <= value <= high:
            raise ConfigError(f"outbound.amd.{key}: {value} is outside {low:g}..{high:g}")
    if not (amd.enabled and amd.on_machine == "message"):
        return
    profiles = [("agent", settings.agent)] + [
        (f"profiles.{name}", profile.agent) for name, profile in settings.profiles.items()
    ]
    for where, profile in profiles:
        if not profile.voicemail_instructions.strip():
            raise ConfigError(
                f'{where}.voicemail_instructions: empty, but outbound.amd.on_machine = "message" '
                "needs the message to speak"
            )


def _validate_records(records: RecordSettings) -> None:
    if records.retention_days < 0:
        raise ConfigError("records.retention_days: must be 0 (keep forever) or positive")
    if records.recording_notice:
        # Imported here: the audio core is not needed to read a profile without a notice.
        from agent.audio.notice import NoticeError, load_notice

        try:
            load_notice(Path(records.recording_notice))
        except NoticeError as exc:
            raise ConfigError(f"records.recording_notice: {exc}") from None


def _validate_profile(profile: AgentProfile, where: str) -> None:
    """Checks of one agent profile ([agent] or a named one under [profiles])."""
    temperature = profile.temperature
    if temperature and not 0.6 <= temperature <= 1.2:
        raise ConfigError(f"{where}.temperature: must be 0 (server default) or within 0.6..1.2")
    if profile.max_output_tokens < 0:
        raise ConfigError(f"{where}.max_output_tokens: must be 0 (server default) or positive")
    if not 0 <= profile.min_barge_in_ms <= 2000:
        raise ConfigError(f"{where}.min_barge_in_ms: must be between 0 and 2000")
    if not 0.25 <= profile.speed <= 1.5:
        raise ConfigError(f"{where}.speed: must be between 0.25 and 1.5")
    if not 0.0 <= profile.noise_reduction_strength <= 1.0:
        raise ConfigError(f"{where}.noise_reduction_strength: must be between 0 and 1")
    if not 0.0 <= profile.truncation_retention_ratio <= 1.0:
        raise ConfigError(f"{where}.truncation_retention_ratio: must be between 0 and 1")
    _validate_limits(profile, where)


def _validate_webhook(hook: WebhookSettings, records: RecordSettings, secrets: Secrets) -> None:
    for key in ("url", "lookup_url"):
        url = getattr(hook, key)
        if url and not re.match(r"https?://[^\s/]+\S*$", url):
            raise ConfigError(f"webhook.{key}: {url!r} is not an http(s):// URL")
    if not (hook.url or hook.lookup_url):
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", hook.secret_env):
        raise ConfigError(
            "webhook.secret_env: name the environment variable that holds the signing secret"
        )
    if not secrets.webhook_secret:
        raise ConfigError(
            f"webhook.secret_env: the environment variable {hook.secret_env} is unset or empty"
        )
    if hook.timeout_s <= 0 or hook.first_retry_s <= 0 or hook.retry_for_h <= 0:
        raise ConfigError("webhook.timeout_s, first_retry_s and retry_for_h: must be positive")
    if hook.max_retry_s < hook.first_retry_s:
        raise ConfigError("webhook.max_retry_s: must be at least first_retry_s")
    if hook.max_pending < 1:
        raise ConfigError("webhook.max_pending: must be at least 1")
    if hook.url and not (hook.outbox_dir or records.dir):
        raise ConfigError("webhook.outbox_dir: needed when records.dir is empty")
    if not 50 <= hook.lookup_timeout_ms <= 10000:
        raise ConfigError("webhook.lookup_timeout_ms: must be between 50 and 10000")


def _validate_limits(profile: AgentProfile, where: str) -> None:
    if profile.silence_hangup_s and profile.silence_hangup_s < 1:
        raise ConfigError(f"{where}.silence_hangup_s: must be 0 (never) or at least 1 second")
    if profile.max_call_s and profile.max_call_s < 2:
        raise ConfigError(f"{where}.max_call_s: must be 0 (no limit) or at least 2 seconds")
    if profile.max_call_goodbye_s < 0:
        raise ConfigError(f"{where}.max_call_goodbye_s: must be 0 or more")


def _validate_session_extras(settings: Settings) -> None:
    rt, live = settings.realtime, settings.live
    if rt.max_session_s < 120:
        raise ConfigError("realtime.max_session_s: must be at least 120 seconds")
    if live.acknowledgement_delay_ms < 0:
        raise ConfigError("live.acknowledgement_delay_ms: must be 0 (server default) or more")
    if live.delegation_timeout_s <= 0:
        raise ConfigError("live.delegation_timeout_s: must be positive")
    if not live.model:
        raise ConfigError("live.model: a GPT-Live model (or Azure deployment) is needed")
    if live.delegation_url and not re.match(r"wss?://\S+$", live.delegation_url):
        raise ConfigError(f"live.delegation_url: {live.delegation_url!r} is not a ws(s):// URL")
    if not live.azure_path.startswith("/"):
        raise ConfigError("live.azure_path: must start with '/'")


def _validate_tools(tools: ToolSettings) -> None:
    """Checks that need no imports; custom modules and MCP servers are checked at start-up."""
    for name in tools.builtin:
        if name not in BUILTIN_TOOLS:
            raise ConfigError(f"tools.builtin: {name!r} is not one of {', '.join(BUILTIN_TOOLS)}")
    if "transfer_call" in tools.builtin and not tools.transfer_destinations:
        raise ConfigError("tools.builtin: transfer_call needs [tools.transfer_destinations]")
    for name, uri in tools.transfer_destinations.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ConfigError(f"tools.transfer_destinations: {name!r} is not a simple name")
        if not re.match(r"sips?:\S+$", uri):
            raise ConfigError(f"tools.transfer_destinations.{name}: {uri!r} is not a SIP URI")
    for digit, action in tools.dtmf_actions.items():
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ConfigError(f"tools.dtmf_actions: {digit!r} is not a DTMF digit ({DTMF_DIGITS})")
        kind, _, target = action.partition(":")
        if action == "end_call":
            continue
        if kind != "transfer_call" or target not in tools.transfer_destinations:
            raise ConfigError(
                f"tools.dtmf_actions.{digit}: {action!r} is not 'end_call' or "
                "'transfer_call:<name>' with a name from [tools.transfer_destinations]"
            )
    if tools.timeout_s <= 0 or any(t <= 0 for t in tools.timeouts.values()):
        raise ConfigError("tools.timeout_s and tools.timeouts: must be positive")
    if not 0 <= tools.filler_after_ms <= 60_000:
        raise ConfigError("tools.filler_after_ms: must be between 0 and 60000")
    if tools.max_output_chars < 100:
        raise ConfigError("tools.max_output_chars: must be at least 100")
    if tools.music_on_hold:
        # Imported here: the audio core is not needed to read a profile without music.
        from agent.audio.hold_music import MusicError, load_music

        try:
            load_music(tools.music_on_hold)
        except MusicError as exc:
            raise ConfigError(f"tools.music_on_hold: {exc}") from None
    if not 100 <= tools.dtmf_batch_ms <= 10000:
        raise ConfigError("tools.dtmf_batch_ms: must be between 100 and 10000")
    try:
        re.compile(tools.send_dtmf_pattern)
    except re.error as exc:
        raise ConfigError(f"tools.send_dtmf_pattern: invalid regular expression: {exc}") from None
    for index, custom in enumerate(tools.custom):
        module, _, function = custom.function.partition(":")
        if not module or not function:
            raise ConfigError(f"tools.custom[{index}].function: expected 'module:function'")
    for index, server in enumerate(tools.mcp):
        where = f"tools.mcp[{index}]"
        if not server.name:
            raise ConfigError(f"{where}.name: every MCP server needs a name")
        if bool(server.command) == bool(server.url):
            raise ConfigError(f"{where}: set either command (stdio) or url (streamable HTTP)")
        if server.url and not re.match(r"https?://", server.url):
            raise ConfigError(f"{where}.url: {server.url!r} is not an http(s):// URL")
    labels: set[str] = set()
    for index, remote in enumerate(tools.server_mcp):
        where = f"tools.server_mcp[{index}]"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", remote.server_label):
            raise ConfigError(f"{where}.server_label: a simple name is needed")
        if remote.server_label in labels:
            raise ConfigError(f"{where}.server_label: {remote.server_label!r} is used twice")
        labels.add(remote.server_label)
        if not re.match(r"https://\S+$", remote.server_url):
            raise ConfigError(f"{where}.server_url: {remote.server_url!r} is not an https:// URL")
        if remote.require_approval not in ("never", "always"):
            raise ConfigError(f"{where}.require_approval: must be 'never' or 'always'")
        for header, variable in remote.headers_env.items():
            if not re.fullmatch(r"[A-Za-z0-9-]+", header):
                raise ConfigError(f"{where}.headers_env: {header!r} is not an HTTP header name")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
                raise ConfigError(
                    f"{where}.headers_env.{header}: {variable!r} is not an environment variable"
                )


def _validate_lines(settings: Settings) -> None:
    """Accounts, peers, allowed sources, routes and profiles: checks that need no network."""
    sip = settings.sip
    for index, source in enumerate(sip.allow_from):
        try:
            ipaddress.ip_network(source, strict=False)
        except ValueError:
            raise ConfigError(
                f"sip.allow_from[{index}]: {source!r} is not an address or CIDR"
            ) from None
    names: set[str] = set()
    kinds: tuple[tuple[str, tuple[AccountSettings | PeerSettings, ...]], ...] = (
        ("accounts", sip.accounts),
        ("peers", sip.peers),
    )
    for kind, entries in kinds:
        for index, entry in enumerate(entries):
            where = f"sip.{kind}[{index}]"
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", entry.name):
                raise ConfigError(f"{where}.name: every entry needs a simple name")
            if entry.name in names:
                raise ConfigError(f"{where}.name: {entry.name!r} is used twice")
            names.add(entry.name)
            if not entry.username:
                raise ConfigError(f"{where}.username: required")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", entry.password_env):
                raise ConfigError(
                    f"{where}.password_env: name the environment variable holding the password"
                )
    for index, account in enumerate(sip.accounts):
        where = f"sip.accounts[{index}]"
        if not re.match(r"sips?:[^\s@]+$", account.registrar):
            raise ConfigError(
                f"{where}.registrar: {account.registrar!r} is not a SIP URI like sip:host[:port]"
            )
        if account.registrar.startswith("sips:") and account.transport != "tls":
            raise ConfigError(f'{where}.transport: a sips: registrar needs transport = "tls"')
        if not 10 <= account.expires_s <= 86400:
            raise ConfigError(f"{where}.expires_s: must be between 10 and 86400")
    tls = sip.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("sip.tls: set both cert_file and key_file, or neither")
    for name in ("cert_file", "key_file", "ca_file"):
        path = getattr(tls, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"sip.tls.{name}: {path} is not a file")
    if not 0 <= tls.port <= 65535:
        raise ConfigError(f"sip.tls.port: {tls.port} is not a TCP port")
    known = set(settings.profiles)
    for index, route in enumerate(settings.routes):
        where = f"routes[{index}]"
        if not (route.dialed or route.caller or route.account):
            raise ConfigError(f"{where}: set at least one of dialed, caller, account")
        if route.profile not in known:
            raise ConfigError(f"{where}.profile: {route.profile!r} is not a [profiles] name")
        if (
            route.srtp == "mandatory"
            and sip.srtp == "off"
            and not any(account.srtp in ("optional", "mandatory") for account in sip.accounts)
        ):
            raise ConfigError(
                f'{where}.srtp: "mandatory" needs sip.srtp (or an account\'s srtp) to allow SRTP'
            )
        if route.account and route.account not in names:
            raise ConfigError(
                f"{where}.account: {route.account!r} is not a [[sip.accounts]] or "
                "[[sip.peers]] name"
            )
    if settings.default_profile and settings.default_profile not in known:
        raise ConfigError(f"default_profile: {settings.default_profile!r} is not a [profiles] name")


def _validate_outbound(settings: Settings) -> None:
    out = settings.outbound
    for key in ("allow", "allow_restricted"):
        for index, pattern in enumerate(getattr(out, key)):
            _check_pattern(pattern, f"outbound.{key}[{index}]")
    accounts = {account.name for account in settings.sip.accounts}
    for name, patterns in out.account_allow.items():
        if name not in accounts:
            raise ConfigError(f"outbound.account_allow: {name!r} is not a [[sip.accounts]] name")
        for index, pattern in enumerate(patterns):
            _check_pattern(pattern, f"outbound.account_allow.{name}[{index}]")
    if out.home_country_code and not re.fullmatch(r"[1-9][0-9]{0,2}", out.home_country_code):
        raise ConfigError(
            f"outbound.home_country_code: {out.home_country_code!r} is not a country code "
            "(1-3 digits, no +)"
        )
    if out.max_concurrent < 1:
        # Above sip.max_calls it changes nothing: every call, in or out, takes capacity.
        raise ConfigError("outbound.max_concurrent: must be at least 1")
    if out.max_per_destination_per_day < 0:
        raise ConfigError("outbound.max_per_destination_per_day: must be 0 (no cap) or more")
    if not 1 <= out.ring_timeout_s <= 300:
        raise ConfigError("outbound.ring_timeout_s: must be between 1 and 300")
    if out.from_number and not re.fullmatch(r"\+?[0-9A-Za-z_.-]{1,64}", out.from_number):
        raise ConfigError(f"outbound.from_number: {out.from_number!r} is not a number or user")
    if out.profile and out.profile not in settings.profiles:
        raise ConfigError(f"outbound.profile: {out.profile!r} is not a [profiles] name")
    if (out.allow or out.allow_restricted) and not (out.ledger_file or settings.records.dir):
        raise ConfigError(
            "outbound.ledger_file: needed when records.dir is empty (the daily caps are kept there)"
        )
    if out.api:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", out.api_token_env):
            raise ConfigError(
                "outbound.api_token_env: name the environment variable holding the API's "
                "bearer token"
            )
        if len(settings.secrets.outbound_api_token) < 16:
            raise ConfigError(
                f"outbound.api_token_env: the environment variable {out.api_token_env} is "
                "unset or shorter than 16 characters"
            )


def _check_pattern(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regular expression: {exc}") from None


#: Sections of the base profile a ``[profiles.NAME]`` may override: its own keys are
#: ``[agent]``'s, ``tools`` and ``realtime`` sub-tables the other two.
PROFILE_SECTIONS = ("tools", "realtime")


def _build_profiles(data: dict[str, Any], raw: Any) -> dict[str, CallProfile]:
    """Each ``[profiles.NAME]`` over the base sections: its own keys over [agent]'s, its
    ``tools`` and ``realtime`` tables over [tools] and [realtime]."""
    if not isinstance(raw, dict):
        raise ConfigError("profiles: expected tables, one [profiles.NAME] each")
    profiles: dict[str, CallProfile] = {}
    for name, table in raw.items():
        where = f"profiles.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ConfigError(f"profiles: {name!r} is not a simple name")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        own = _renamed({k: v for k, v in table.items() if k not in PROFILE_SECTIONS}, "agent")
        known = {f.name for f in dataclasses.fields(AgentProfile)} | set(PROFILE_SECTIONS)
        unknown = sorted(set(own) - known)
        if unknown:
            raise ConfigError(
                f"[{where}] unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        base_agent = data.get("agent", {})
        base_agent = _renamed(base_agent, "agent") if isinstance(base_agent, dict) else {}
        sections: dict[str, dict[str, Any]] = {}
        for section in PROFILE_SECTIONS:
            override = table.get(section, {})
            if not isinstance(override, dict):
                raise ConfigError(f"{where}.{section}: expected a table")
            sections[section] = _merged(data.get(section, {}), override)
        profile = CallProfile(
            agent=_build(AgentProfile, _merged(base_agent, own), where),
            tools=_build(ToolSettings, sections["tools"], f"{where}.tools"),
            realtime=_build(RealtimeSettings, sections["realtime"], f"{where}.realtime"),
        )
        try:
            _validate_tools(profile.tools)
        except ConfigError as exc:
            raise ConfigError(f"[{where}] {exc}") from None
        profiles[name] = profile
    return profiles


def secrets_from_env(
    env: typing.Mapping[str, str], password_envs: typing.Iterable[str] = ()
) -> Secrets:
    missing = [name for name in password_envs if not env.get(name)]
    if missing:
        raise ConfigError(f"password_env: the environment variable {missing[0]} is not set")
    return Secrets(
        sip_passwords={name: env[name] for name in password_envs},
        openai_api_key=env.get("OPENAI_API_KEY", "").strip(),
        azure_api_key=env.get("AZURE_OPENAI_API_KEY", "").strip(),
        azure_endpoint=env.get("AZURE_OPENAI_ENDPOINT", "").strip(),
        azure_deployment=env.get("AZURE_OPENAI_DEPLOYMENT", "").strip(),
        azure_api_version=env.get("AZURE_OPENAI_API_VERSION", "").strip(),
        realtime_api_key=env.get("REALTIME_API_KEY", "").strip(),
    )


def _merged(base: Any, over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, table by table (a named profile over [agent])."""
    merged = dict(base) if isinstance(base, dict) else {}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: Path | None = None,
    *,
    env_file: Path | None = None,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Read the TOML profile at ``path`` (default ``config/agent.toml``), then the environment.

    ``overrides`` are per-section values from the command line, applied over the file.
    ``environ`` replaces ``os.environ`` (tests); otherwise ``.env`` is loaded first.
    """
    config_path = path or DEFAULT_CONFIG_PATH
    if path is not None and not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    data: dict[str, Any] = {}
    if config_path.is_file():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: invalid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    if "secrets" in data:
        raise ConfigError("secrets belong in the environment or .env, not in the config file")
    if env_file is not None and not env_file.exists():
        # A typo here would otherwise fall back, silently, to another backend.
        raise ConfigError(f"env file not found: {env_file}")
    raw_profiles = data.pop("profiles", {})
    settings: Settings = _build(Settings, data, "")
    settings = dataclasses.replace(settings, profiles=_build_profiles(data, raw_profiles))
    _validate_lines(settings)
    if environ is None:
        load_dotenv(env_file or Path.cwd() / ".env", override=False)
        environ = os.environ
    sip = settings.sip
    password_envs = sorted(
        {account.password_env for account in sip.accounts}
        | {peer.password_env for peer in sip.peers}
    )
    secrets = secrets_from_env(environ, password_envs)
    if settings.webhook.secret_env:
        webhook_secret = environ.get(settings.webhook.secret_env, "").strip()
        secrets = dataclasses.replace(secrets, webhook_secret=webhook_secret)
    if settings.outbound.api_token_env:
        token = environ.get(settings.outbound.api_token_env, "").strip()
        secrets = dataclasses.replace(secrets, outbound_api_token=token)
    settings = dataclasses.replace(settings, secrets=secrets)
    _validate(settings)
    _validate_outbound(settings)
    _validate_tools(settings.tools)
    return settings
