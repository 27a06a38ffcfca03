"""WebRTC: which conversation item the model's media track is playing. No I/O.

Over WebSocket every audio delta names its item; over WebRTC the audio comes on the media
track with no ids, and the data channel says around it which response plays
(``output_audio_buffer.started`` .. ``stopped``/``cleared``) and which item it is
(``response.output_item.added``). This joins the two, so the bridge accounts, plays and cuts
track audio exactly like deltas: per item, with the same barge-in and truncation.

Audio outside a playout (the silence a track carries between turns) belongs to nobody and is
dropped. The track and the data channel are separate streams, so a playout's last frames may
arrive just after its ``stopped``: they are taken for ``TAIL_MS`` more.
"""

from __future__ import annotations

from agent.bridge.events import AudioDelta

#: How long after ``output_audio_buffer.stopped`` the track's frames still count as its audio.
TAIL_MS = 100.0


class TrackAttribution:
    """One session's playout state, from the data channel's events."""

    def __init__(self) -> None:
        self._item: tuple[str, str] | None = None  # (response_id, item_id) of the latest
        self._playing: str | None = None
        self._stopped_at: float | None = None

    def item_started(self, response_id: str, item_id: str) -> None:
        self._item = (response_id, item_id)

    def started(self, response_id: str) -> None:
        self._playing = response_id
        self._stopped_at = None

    def stopped(self, now: float) -> str | None:
        """The playout drained; the item it played (its audio is done), if any."""
        self._playing = None
        self._stopped_at = now
        return self._item[1] if self._item is not None else None

    def cleared(self) -> None:
        """The rest was dropped: nothing more of it will play, not even a tail."""
        self._playing = None
        self._stopped_at = None

    @property
    def playing(self) -> bool:
        """True between the server's ``started`` and its ``stopped``/``cleared``."""
        return self._playing is not None

    def attribute(self, audio: bytes, now: float) -> AudioDelta | None:
        """Track audio as the delta of the item playing; None for audio of no playout."""
        if self._item is None:
            return None
        in_tail = self._stopped_at is not None and now - self._stopped_at <= TAIL_MS
        if self._playing is None and not in_tail:
            return None
        response_id, item_id = self._item
        return AudioDelta(response_id, item_id, audio)
