"""Answering-machine detection benchmark: verdict accuracy, decision times and beep timing over
generated callees (testbed/callee_audio.py) at several line-noise levels.

Usage: uv run python bench/amd.py [--quick] [--json PATH]

Callees: people saying a short greeting ("hello?", 0.4-1.4 s) then waiting; voicemail
greetings of 3-10 s with a beep of 440-1800 Hz and 250-1000 ms, or none; silence; line noise
alone. Each at 8 and 16 kHz, alone and under white noise of -50 to -20 dBFS (the speech is
about -15 dBFS). Per noise level: the share of right verdicts (per expected verdict), when the
verdict came (ms after the answer), how far the beep's found start lies from where it was put,
and when the message could start against the beep's end. Plus the detector's CPU per 20 ms
frame. Everything but the CPU time is deterministic.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.outbound.amd import AnsweringMachineDetector, GreetingEnded, Verdict
from agent.outbound.amd_settings import AmdSettings
from bench.harness import RESULTS, percentiles, write_json
from testbed import callee_audio
from testbed.callee_audio import CalleeAudio
from testbed.peers import speech_like

DEFAULT_JSON = RESULTS / "amd.json"
NOISE_DBFS: tuple[float | None, ...] = (None, -50.0, -40.0, -30.0, -25.0, -20.0)
RATES = (8000, 16000)
#: Voicemail greetings: greeting ms, beep Hz, beep ms (0: no beep).
VOICEMAILS = [(3000, 1000, 500), (6000, 1000, 500), (10000, 1400, 250), (6000, 440, 1000),
              (4500, 1800, 400), (6000, 1000, 0), (8000, 850, 600)]  # fmt: skip


def cases(rate: int, quick: bool) -> list[CalleeAudio]:
    people = [
        dataclasses.replace(callee_audio.hello(rate, lead, tail_ms=6000), name=f"hello_{lead}ms")
        for lead in (150, 300, 810)
    ]
    people += [_person(rate, talk) for talk in (0.4, 1.0, 1.4)]
    # Leads that are no whole number of frames: the beep starts anywhere in a frame.
    machines = [
        dataclasses.replace(
            callee_audio.voicemail(
                rate, ms, hz, beep, lead_ms=200 + 7 * seed, tail_ms=4000, seed=seed
            ),
            name=f"voicemail_{ms}ms_{hz}hz_{beep}ms",
        )
        for seed, (ms, hz, beep) in enumerate(VOICEMAILS)
    ]
    nobody = [callee_audio.silence(rate), callee_audio.noise(rate, dbfs=-45.0)]
    if quick:
        return [people[1], machines[1], machines[5], nobody[0]]
    return people + machines + nobody


def _person(rate: int, talk_s: float) -> CalleeAudio:
    lead = np.zeros(rate * 3 // 10, np.int16)
    pcm = np.concatenate([lead, speech_like(talk_s, rate), np.zeros(rate * 6, np.int16)])
    name = f"person_{talk_s:g}s"
    return CalleeAudio(name, pcm.tobytes(), rate, callee_audio.HUMAN, speech_ms=300)


def run_case(audio: CalleeAudio, settings: AmdSettings) -> dict[str, Any]:
    detector = AnsweringMachineDetector(settings, audio.rate)
    events: list[Verdict | GreetingEnded] = []
    spent_ns = 0
    frames = 0
    for index, frame in enumerate(callee_audio.frames(audio)):
        start = time.perf_counter_ns()
        events += detector.frame(frame)
        events += detector.tick((index + 1) * 20)
        spent_ns += time.perf_counter_ns() - start
        frames += 1
        if detector.done:
            break
    verdict = next((e for e in events if isinstance(e, Verdict)), None)
    end = next((e for e in events if isinstance(e, GreetingEnded)), None)
    result: dict[str, Any] = {
        "case": audio.name,
        "rate": audio.rate,
        "expected": audio.expected,
        "verdict": verdict.verdict if verdict else None,
        "decided_ms": verdict.decided_ms if verdict else None,
        "greeting_end": end.how if end else None,
        "cpu_us_per_frame": spent_ns / max(frames, 1) / 1000,
    }
    if audio.beep_ms is not None and audio.beep_end_ms is not None:
        found = end is not None and end.beep_ms is not None
        result["beep_found"] = found
        if found and end is not None and end.beep_ms is not None:
            result["beep_error_ms"] = end.beep_ms - audio.beep_ms
            result["message_after_beep_end_ms"] = end.at_ms - audio.beep_end_ms
    return result


def run(quick: bool = False, settings: AmdSettings | None = None) -> dict[str, Any]:
    settings = settings or AmdSettings()
    levels = NOISE_DBFS[:3:2] if quick else NOISE_DBFS
    rows: list[dict[str, Any]] = []
    everything: list[dict[str, Any]] = []
    for noise in levels:
        results = []
        for rate in RATES:
            for audio in cases(rate, quick):
                if noise is not None and audio.name == "noise":
                    audio = callee_audio.noise(rate, dbfs=noise)  # the noise alone, this loud
                elif noise is not None:
                    audio = callee_audio.noisy(audio, noise)
                results.append(run_case(audio, settings))
        everything += results
        rows.append(_summary(noise, results))
    cpu = [r["cpu_us_per_frame"] for r in everything]
    return {
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "levels": rows,
        "cpu_us_per_frame": percentiles(cpu),
        "cases": everything,
    }


def _summary(noise: float | None, results: list[dict[str, Any]]) -> dict[str, Any]:
    by_expected: dict[str, dict[str, Any]] = {}
    for expected in sorted({r["expected"] for r in results}):
        group = [r for r in results if r["expected"] == expected]
        right = [r for r in group if r["verdict"] == expected]
        by_expected[expected] = {
            "cases": len(group),
            "right": len(right),
            "wrong": [f"{r['case']}@{r['rate']}: {r['verdict']}" for r in group if r not in right],
            "decided_ms": percentiles([r["decided_ms"] for r in right], 0),
        }
    beeps = [r for r in results if "beep_found" in r]
    found = [r for r in beeps if r["beep_found"]]
    return {
        "noise_dbfs": noise,
        "accuracy": round(sum(v["right"] for v in by_expected.values()) / len(results), 3),
        "by_expected": by_expected,
        "beeps": len(beeps),
        "beeps_found": len(found),
        "beep_error_ms": percentiles([abs(r["beep_error_ms"]) for r in found], 0),
        "message_after_beep_end_ms": percentiles(
            [r["message_after_beep_end_ms"] for r in found], 0
        ),
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'noise dBFS':>10} {'right':>6} {'human ms p50/max':>17} {'machine ms p50/max':>19} "
        f"{'unknown':>8} {'beeps':>6} {'beep err max':>12} {'msg-beep end max':>16}"
    ]
    for row in result["levels"]:
        by = row["by_expected"]

        def times(kind: str, by: dict[str, Any] = by) -> str:
            figures = by.get(kind, {}).get("decided_ms", {})
            return f"{figures.get('p50')}/{figures.get('max')}"

        unknown = by.get("unknown", {})
        noise = "none" if row["noise_dbfs"] is None else f"{row['noise_dbfs']:g}"
        lines.append(
            f"{noise:>10} {row['accuracy']:>6.0%} {times('human'):>17} {times('machine'):>19} "
            f"{unknown.get('right', 0)}/{unknown.get('cases', 0):<6} "
            f"{row['beeps_found']}/{row['beeps']:<4} {row['beep_error_ms']['max']!s:>12} "
            f"{row['message_after_beep_end_ms']['max']!s:>16}"
        )
    cpu = result["cpu_us_per_frame"]
    lines.append(f"detector CPU per 20 ms frame: p50 {cpu['p50']} us, max {cpu['max']} us")
    for row in result["levels"]:
        for kind, figures in row["by_expected"].items():
            if figures["wrong"]:
                lines.append(f"  noise {row['noise_dbfs']}: {kind} missed: {figures['wrong']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few cases, two noise levels")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    result = run(args.quick)
    print(format_table(result))
    write_json(result, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
