"""A PJSUA2 caller in a process of its own, for calls SIPp cannot place (this machine's SIPp
has no TLS) and the baresip-python caller cannot either (it cannot dial ``sips:``).

``python -m testbed.pjsip_caller URI --ca CA --play WAV --record WAV --seconds S`` dials URI
over TLS (verifying the callee against CA) with SDES-SRTP mandatory, plays WAV into the
call and records what it hears, hangs up after S seconds connected (unless the callee did
first), and prints one JSON line: the final status, the Contact the callee answered with,
whether the call was confirmed and whether the callee ended it. Bounded: it gives up 15 s
after dialling without an answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import pjsua2 as pj

_ANSWER_WAIT_S = 15.0


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, play: str, record: str) -> None:
        super().__init__(account)
        self.play, self.record = play, record
        self.confirmed = False
        self.ended = False
        self.hung_up = False
        self.status = 0
        self.contact = ""
        self._media: list[Any] = []

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        self.status = int(info.lastStatusCode)
        if info.remoteContact:
            self.contact = info.remoteContact
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True

    def onCallMediaState(self, prm: Any) -> None:
        if self._media:
            return
        audio = self.getAudioMedia(-1)
        player = pj.AudioMediaPlayer()
        player.createPlayer(self.play, pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(audio)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(self.record)
        audio.startTransmit(recorder)
        self._media = [player, recorder]


def _pump(ep: pj.Endpoint, seconds: float, until: Any = lambda: False) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        ep.libHandleEvents(20)


def _place(ep: pj.Endpoint, account: pj.Account, args: argparse.Namespace) -> dict[str, Any]:
    """One call to ``args.uri``: its report (the call object is gone once this returns)."""
    call = _Call(account, args.play, args.record)
    call.makeCall(args.uri, pj.CallOpParam(True))
    _pump(ep, _ANSWER_WAIT_S, lambda: call.confirmed or call.ended)
    if call.confirmed:
        _pump(ep, args.seconds, lambda: call.ended)
    if not call.ended:
        call.hangup(pj.CallOpParam(True))
        call.hung_up = True
        _pump(ep, 3.0, lambda: call.ended)
    return {
        "confirmed": call.confirmed,
        "status": call.status,
        "contact": call.contact,
        # The callee ended the call (its BYE reached us) before we hung up.
        "ended_by_callee": call.confirmed and call.ended and not call.hung_up,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--play", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = int(os.environ.get("PJ_CALLER_LOG", "1"))
    cfg.logConfig.consoleLevel = cfg.logConfig.level
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.channelCount = 1
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    tcfg = pj.TransportConfig()
    tcfg.boundAddress = "127.0.0.1"
    tls = tcfg.tlsConfig
    tls.method = pj.PJSIP_TLSV1_2_METHOD
    tls.CaListFile = args.ca
    tls.verifyServer = True
    transport = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
    udp = pj.TransportConfig()
    udp.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, udp)
    ep.libStart()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU/") else 0)

    acfg = pj.AccountConfig()
    acfg.idUri = "sips:caller@127.0.0.1"
    acfg.sipConfig.transportId = transport
    acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
    acfg.mediaConfig.srtpSecureSignaling = 0
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account = pj.Account()
    account.create(acfg)
    report = _place(ep, account, args)
    print(json.dumps(report))
    sys.stdout.flush()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
