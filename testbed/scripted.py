"""A local backend that follows the shipped script without loading a speech model.

The voice backend hears with Whisper and speaks with Piper, which is slow to load and heavy
for CI. A test that only needs the script's behaviour (which intent a phrase triggers, which
function it calls, what is said after it) uses ``scripted_backend``: the brain decides as
the voice backend's does, the synthetic voice says it, and a ``HeardTranscriber`` stands in
for speech-to-text, hearing the words the test chose in whatever audio the caller sends (a
test caller's audio is a tone). GPT-Live needs a transcriber: the caller's transcript deltas
are its client's only sign that the caller spoke.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from agent.local.backend import Backend
from agent.local.brain import Brain, load_brain
from agent.local.replies import Reply, ReplyRequest
from agent.local.synthetic_voice import synthesize_voice
from agent.local.voice import decide


class HeardTranscriber:
    """Hears ``text`` in any audio; ``heard`` may be changed between turns."""

    def __init__(self, text: str) -> None:
        self.heard = text
        self.jobs: list[float] = []
        """The length (s) of each audio it was given."""

    def submit(self, pcm: bytes, rate: int) -> Future[str]:
        self.jobs.append(len(pcm) / 2 / rate)
        future: Future[str] = Future()
        future.set_result(self.heard)
        return future


class ScriptedVoice:
    """The script's decisions (``agent.local.voice.decide``) in the synthetic voice."""

    def __init__(self, brain: Brain) -> None:
        self.brain = brain
        self.requests: list[ReplyRequest] = []
        """Every request it answered, oldest first (tests read what the voice was asked)."""

    def reply(self, request: ReplyRequest) -> Reply:
        self.requests.append(request)
        decision = decide(self.brain, request)
        audio = synthesize_voice(decision.text).astype("<i2").tobytes() if decision.text else b""
        return Reply(decision.text, iter([audio]), decision.tool_call)


def scripted_backend(
    heard: str | HeardTranscriber, brain_path: Path | None = None
) -> tuple[Backend, list[ScriptedVoice]]:
    """A backend speaking the script at ``brain_path`` (default: the shipped one) that hears
    ``heard`` in every caller turn; and the list of the voices it made, one per connection,
    for a test to inspect."""
    brain = load_brain(brain_path)
    transcriber = heard if isinstance(heard, HeardTranscriber) else HeardTranscriber(heard)
    voices: list[ScriptedVoice] = []

    def voice() -> ScriptedVoice:
        voices.append(ScriptedVoice(brain))
        return voices[-1]

    return Backend("scripted", voice, transcriber=transcriber, brain=brain), voices
