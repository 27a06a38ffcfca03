"""Speech-to-text of the caller's audio turns, run off the event loop.

Each user audio item is transcribed at most once, when it is committed (if the session asks
for transcripts) or when a response needs its words, whichever comes first. A finished
transcription wakes the protocol, which reports it (``delta`` then ``completed``, or
``failed``) at its next poll, in parallel with any response, as the API does.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from agent.local.events import Item
from agent.local.outbox import Outbox
from agent.local.responder import Transcriber


class Transcriptions:
    """The transcriptions of one connection: started on demand, reported when done."""

    def __init__(
        self, transcriber: Transcriber | None, out: Outbox, wake: Callable[[], None]
    ) -> None:
        self._transcriber = transcriber
        self._out = out
        self._wake = wake
        self._reported: list[Item] = []
        """Items whose transcript the client asked for and has not been told yet."""

    def start(self, item: Item) -> Future[str] | None:
        """Start (once) the speech-to-text of a user audio item; None when there is nothing
        to transcribe with or nothing to transcribe."""
        if item.transcription is None and self._transcriber is not None and item.audio:
            item.transcription = self._transcriber.submit(item.audio, item.audio_rate)
            item.transcription.add_done_callback(lambda _: self._wake())
        return item.transcription

    def report(self, item: Item) -> None:
        """Start transcribing ``item`` and tell the client the transcript once it is done."""
        if self.start(item) is not None:
            self._reported.append(item)

    def report_finished(self) -> None:
        """Send the transcripts (or failures) that finished since the last look."""
        for item in list(self._reported):
            future = item.transcription
            if future is None or not future.done():
                continue
            self._reported.remove(item)
            ids = {"item_id": item.id, "content_index": 0}
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or error is not None:
                self._out.send(
                    "conversation.item.input_audio_transcription.failed",
                    **ids,
                    error={
                        "type": "transcription_error",
                        "code": "transcription_failed",
                        "message": str(error or "cancelled"),
                        "param": None,
                    },
                )
                continue
            text = future.result()
            item.data["content"][0]["transcript"] = text
            seconds = len(item.audio) / 2 / item.audio_rate
            self._out.send("conversation.item.input_audio_transcription.delta", **ids, delta=text)
            self._out.send(
                "conversation.item.input_audio_transcription.completed",
                **ids,
                transcript=text,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )

    def cancel(self) -> None:
        """The connection ended: stop the transcriptions not reported yet."""
        for item in self._reported:
            if item.transcription is not None:
                item.transcription.cancel()
        self._reported.clear()
