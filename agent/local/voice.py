"""The voice backend: a phone agent a person can talk to with no cloud at all.

Per turn: Silero VAD ends the caller's turn (``silero_vad``), Whisper transcribes it
(``stt``), the rule-based brain picks the reply and any function call (``brain``), and Piper
speaks it (``tts``), streamed piece by piece. Speech-to-text and text-to-speech run on the
process's worker threads; the models are loaded once per process and shared by every call,
so a call's own state is a borrowed VAD model and the reply in flight. This module holds the
responder and the transcriber; ``backend.voice_backend`` puts the parts together.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future

from agent.local.brain import Brain, Decision
from agent.local.models import VoiceModels
from agent.local.replies import ReplyPlan, ReplyRequest
from agent.local.reply_stream import ReplyStream, start_reply


def decide(brain: Brain, request: ReplyRequest) -> Decision:
    """The brain's decision for a response; may block on the turn's speech-to-text."""
    if request.say is not None:
        # The client chose the words; the brain has nothing to decide.
        return Decision(request.say, None, "say")
    if request.tool_result is not None:
        return brain.after_tool(request.tool_result)
    if request.idle:
        return brain.prompt_idle()
    if request.user_text is not None:
        return brain.answer(request.user_text, request.tools)
    if not request.user_audio:
        # Nothing said yet: the agent speaks first.
        return brain.greet()
    heard = request.user_transcript() if request.user_transcript is not None else ""
    return brain.answer(heard, request.tools)


class VoiceResponder:
    """Answers each response with a ``ReplyStream`` filled on the worker threads."""

    def __init__(self, brain: Brain, models: VoiceModels, executor: Executor) -> None:
        self._brain = brain
        self._models = models
        self._executor = executor

    def reply(self, request: ReplyRequest) -> ReplyStream:
        return start_reply(self._executor, lambda stream: self._produce(request, stream))

    def _produce(self, request: ReplyRequest, stream: ReplyStream) -> None:
        decision = decide(self._brain, request)
        stream.set_plan(ReplyPlan(decision.text, decision.tool_call))
        if not request.audio or not decision.text:
            return
        for pcm in self._models.tts().synthesize(decision.text):
            if stream.cancelled:
                return
            stream.put_audio(pcm.astype("<i2").tobytes())


class WhisperTranscriber:
    """``Transcriber`` running Whisper on the worker threads."""

    def __init__(self, models: VoiceModels, executor: Executor) -> None:
        self._models = models
        self._executor = executor

    def submit(self, pcm: bytes, rate: int) -> Future[str]:
        return self._executor.submit(lambda: self._models.stt().transcribe(pcm, rate))
