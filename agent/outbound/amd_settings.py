"""``[outbound.amd]``: answering-machine detection on outbound calls (see ``amd``)."""

from __future__ import annotations

from dataclasses import dataclass

#: What an outbound call does when a machine answers.
ON_MACHINE = ("message", "hangup")


@dataclass(frozen=True)
class AmdSettings:
    """The detector's thresholds and what follows a machine verdict.

    Defaults follow the usual energy-based detectors (Asterisk's ``AMD()``: a greeting over
    ~2.5 s is a machine, ~0.8 s of silence after a short one is a person, 5 s to decide).
    """

    #: Detect before the agent speaks on outbound calls (inbound calls never are).
    enabled: bool = True
    #: Longest detection, from the answer: no verdict by then is "unknown" (the agent talks).
    max_detect_ms: int = 5000
    #: A greeting of speech (gaps shorter than ``human_silence_ms``) this long is a machine.
    machine_speech_ms: int = 2500
    #: Silence this long after a greeting shorter than ``machine_speech_ms`` is a person.
    human_silence_ms: int = 800
    #: Quietest 20 ms frame counted as speech, and how far above the line's noise floor.
    speech_dbfs: float = -40.0
    speech_snr_db: float = 10.0
    #: "message" (wait for the beep, then the model speaks the profile's
    #: ``voicemail_instructions`` and hangs up) or "hangup" (end the call at once).
    on_machine: str = "message"
    #: After a machine verdict, the longest wait for the beep (or the greeting's end).
    beep_wait_ms: int = 15000
    #: A steady tone this long, 400-2000 Hz, is the beep.
    beep_min_ms: int = 200
    #: No beep: silence this long after the machine's greeting ends it.
    end_silence_ms: int = 1500
    #: The message's longest run, from its start: the agent hangs up then at the latest.
    message_max_ms: int = 60000
