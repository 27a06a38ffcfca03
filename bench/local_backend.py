"""Benchmark the local voice backend: turn latency, speech model speed, memory per call.

Usage: uv run python bench/local_backend.py [--json PATH] [--turns N] [--concurrent N]

A client streams caller turns over the realtime WebSocket protocol, in real time and 20 ms
appends as the agent does, to an in-process ``LocalRealtimeServer`` with the voice backend
(Silero VAD, Whisper tiny.en, the default brain, Piper). Each turn is a phrase spoken by the
backend's own voice at telephone quality (8 kHz mu-law, lifted to 24 kHz) followed by
silence. It reports:

- turn latency: from the end of the caller's speech (the wall time its last loud sample was
  appended) to the first reply audio delta, p50/p99, one call alone and ``--concurrent``
  calls at once; split into the VAD's wait (the session's silence_duration_ms), the end of
  speech-to-text (transcription event) and the first audio;
- speech-to-text: real-time factor (compute time / audio time) and word error rate on 16
  caller sentences; text-to-speech: real-time factor and time to the first audio of each reply;
- model load time and memory: process RSS with the models loaded, and RSS per concurrent
  call (each borrows a Silero model and holds its buffers).

Replies are cancelled once their first audio arrives: the benchmark measures how fast an
answer starts, and a turn then takes ~3 s instead of ~7.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect

from agent.local.backend import voice_backend
from agent.local.brain import load_brain
from agent.local.models import voice_models
from agent.local.server import LocalRealtimeServer
from testbed.voice import PHRASES, speech_bounds_ms, spoken, telephone, word_error_rate

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "local_backend.json"
#: Sentences a caller might say to a shop, for the speech-to-text word error rate.
STT_SENTENCES = (
    *PHRASES,
    "My package has not arrived yet.",
    "Are you open on Sunday morning?",
    "I need to change my delivery address.",
    "Could you put me through to the sales team?",
    "The parcel was damaged when it arrived.",
    "Hello, is anybody there?",
    "I want to return a pair of shoes.",
    "How much does shipping cost?",
    "Please cancel my last order.",
    "What time do you close today?",
    "Thank you, that is all I needed.",
)
SILENCE_MS = 500
"""The agent profile's default silence_duration_ms."""
LEAD_MS, TAIL_MS = 300, 1500
FRAME = 480  # 20 ms at 24 kHz


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def caller_turn(text: str) -> tuple[np.ndarray, float]:
    """24 kHz PCM16 of a caller turn (telephone speech between silences) and where its speech
    ends (ms from the turn's start)."""
    line = telephone(spoken(text))
    audio8k = np.concatenate(
        [np.zeros(LEAD_MS * 8, np.int16), line, np.zeros(TAIL_MS * 8, np.int16)]
    )
    _, end_ms = speech_bounds_ms(audio8k, 8000)
    return np.round(soxr.resample(audio8k, 8000, 24000)).astype(np.int16), end_ms


def measure_models() -> dict[str, Any]:
    """Load time, then speech-to-text and text-to-speech speed on the phrases and replies."""
    models = voice_models()
    before = rss_mb()
    started = time.perf_counter()
    models.wait_loaded()
    load_s = time.perf_counter() - started
    stt, tts = models.stt(), models.tts()
    brain = load_brain()
    replies = sorted({brain.answer(p, ()).text for p in PHRASES} | {brain.script.greeting})
    tts_rows = []
    for text in replies:
        started = time.perf_counter()
        first = None
        samples = 0
        for piece in tts.synthesize(text):
            first = first if first is not None else time.perf_counter() - started
            samples += len(piece)
        elapsed = time.perf_counter() - started
        tts_rows.append({"first_audio_s": first, "rtf": elapsed / (samples / 24000)})
    stt_rows = []
    for text in STT_SENTENCES:
        line = telephone(spoken(text))
        started = time.perf_counter()
        heard = stt.transcribe(line.astype("<i2").tobytes(), 8000)
        elapsed = time.perf_counter() - started
        stt_rows.append(
            {
                "text": text,
                "heard": heard,
                "wer": word_error_rate(text, heard),
                "seconds": elapsed,
                "rtf": elapsed / (len(line) / 8000),
            }
        )
    return {
        "load_s": round(load_s, 2),
        "models_rss_mb": round(rss_mb() - before, 1),
        "tts": {
            "first_audio_s_p50": round(percentile([r["first_audio_s"] for r in tts_rows], 50), 3),
            "first_audio_s_max": round(max(r["first_audio_s"] for r in tts_rows), 3),
            "rtf_mean": round(float(np.mean([r["rtf"] for r in tts_rows])), 3),
        },
        "stt": {
            "seconds_p50": round(percentile([r["seconds"] for r in stt_rows], 50), 3),
            "rtf_mean": round(float(np.mean([r["rtf"] for r in stt_rows])), 3),
            "wer_mean": round(float(np.mean([r["wer"] for r in stt_rows])), 3),
            "errors": [
                {k: r[k] for k in ("text", "heard", "wer")} for r in stt_rows if r["wer"] > 0
            ],
        },
    }


class Caller:
    """One realtime session driven like the agent drives it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.arrivals: dict[str, list[float]] = {}
        self.cancelled = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            event = json.loads(message)
            kind = event["type"]
            self.arrivals.setdefault(kind, []).append(time.monotonic())
            if kind == "response.output_audio.delta" and len(self.arrivals[kind]) == 1:
                await self.ws.send(json.dumps({"type": "response.cancel"}))
            if kind == "response.done":
                self.cancelled.set()

    async def setup(self) -> None:
        session = {
            "type": "realtime",
            "audio": {
                "input": {
                    "transcription": {"model": "local"},
                    "turn_detection": {
                        "type": "server_vad",
                        "silence_duration_ms": SILENCE_MS,
                        "prefix_padding_ms": 300,
                    },
                }
            },
        }
        await self.ws.send(json.dumps({"type": "session.update", "session": session}))

    async def turn(self, audio: np.ndarray, end_ms: float) -> dict[str, float]:
        """Stream one caller turn in real time; the timings of the answer to it."""
        self.arrivals.clear()
        self.cancelled.clear()
        start = time.monotonic()
        speech_end = start + end_ms / 1000
        for index, offset in enumerate(range(0, len(audio), FRAME)):
            chunk = audio[offset : offset + FRAME].astype("<i2").tobytes()
            append = {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(chunk).decode(),
            }
            await self.ws.send(json.dumps(append))
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - time.monotonic()))
        await asyncio.wait_for(self.cancelled.wait(), 30)

        def after(kind: str) -> float:
            return (self.arrivals[kind][0] - speech_end) * 1000

        return {
            "speech_stopped_ms": after("input_audio_buffer.speech_stopped"),
            "transcribed_ms": after("conversation.item.input_audio_transcription.completed"),
            "first_audio_ms": after("response.output_audio.delta"),
        }

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def run_calls(server: LocalRealtimeServer, calls: int, turns_each: int) -> list[dict]:
    turns = [caller_turn(text) for text in PHRASES]
    callers = [Caller(await connect(server.url, max_size=None)) for _ in range(calls)]
    for caller in callers:
        await caller.setup()

    async def talk(index: int, caller: Caller) -> list[dict[str, float]]:
        await asyncio.sleep(index * 0.7)  # callers do not finish their turns in lockstep
        rows = []
        for turn in range(turns_each):
            rows.append(await caller.turn(*turns[(index + turn) % len(turns)]))
        return rows

    try:
        results = await asyncio.gather(*(talk(i, c) for i, c in enumerate(callers)))
    finally:
        for caller in callers:
            await caller.close()
    return [row for rows in results for row in rows]


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    first = [r["first_audio_ms"] for r in rows]
    return {
        "turns": len(rows),
        "first_audio_ms_p50": round(percentile(first, 50)),
        "first_audio_ms_p99": round(percentile(first, 99)),
        "speech_stopped_ms_p50": round(percentile([r["speech_stopped_ms"] for r in rows], 50)),
        "transcribed_ms_p50": round(percentile([r["transcribed_ms"] for r in rows], 50)),
    }


async def measure_turns(turns: int, concurrent: int) -> dict[str, Any]:
    async with LocalRealtimeServer(backend=voice_backend()) as server:
        idle_rss = rss_mb()
        cpu_before = sum(os.times()[:2])
        alone = await run_calls(server, 1, turns)
        cpu_per_turn = (sum(os.times()[:2]) - cpu_before) / len(alone)
        # Memory per call: sessions held open, each mid-conversation (one turn done).
        base = rss_mb()
        together = await run_calls(server, concurrent, -(-turns // concurrent))
        peak = rss_mb()
    return {
        "one_call": summarise(alone),
        f"{concurrent}_calls": summarise(together),
        "cpu_s_per_turn": round(cpu_per_turn, 3),
        "rss_mb_idle_with_models": round(idle_rss, 1),
        "rss_mb_per_call": round(max(peak - base, 0.0) / concurrent, 1),
    }


def format_report(result: dict[str, Any]) -> str:
    models, turns = result["models"], result["turns"]
    lines = [
        f"models: loaded in {models['load_s']} s, +{models['models_rss_mb']} MB RSS",
        f"speech-to-text: {models['stt']['seconds_p50']} s per phrase (p50), "
        f"RTF {models['stt']['rtf_mean']}, WER {models['stt']['wer_mean']:.1%}",
        f"text-to-speech: first audio {models['tts']['first_audio_s_p50']} s (p50), "
        f"max {models['tts']['first_audio_s_max']} s, RTF {models['tts']['rtf_mean']}",
    ]
    for key, row in turns.items():
        if not isinstance(row, dict):
            continue
        lines.append(
            f"end of speech -> first reply audio, {key.replace('_', ' ')} ({row['turns']} turns):"
            f" p50 {row['first_audio_ms_p50']} ms, p99 {row['first_audio_ms_p99']} ms"
            f" (VAD {row['speech_stopped_ms_p50']} ms, transcript {row['transcribed_ms_p50']} ms)"
        )
    lines.append(
        f"CPU per turn {turns['cpu_s_per_turn']} s; RSS {turns['rss_mb_idle_with_models']} MB "
        f"with models, +{turns['rss_mb_per_call']} MB per call"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--turns", type=int, default=10, help="turns of the single call")
    parser.add_argument("--concurrent", type=int, default=3, help="calls at once")
    args = parser.parse_args(argv)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "models": measure_models(),
        "turns": asyncio.run(measure_turns(args.turns, args.concurrent)),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(format_report(result))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
