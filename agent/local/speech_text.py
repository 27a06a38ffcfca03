"""Splitting a reply into pieces that text-to-speech can voice one at a time.

Synthesis time grows with the text, so the first piece should be short: the caller hears
the reply as soon as that piece is done while the rest is synthesized behind it. Pieces end
at sentence boundaries, and also at commas, semicolons and colons once the piece has a few
words (a lone "Yes," sounds clipped on its own and would save nothing).
"""

from __future__ import annotations

import re

MIN_CLAUSE_WORDS = 3
"""A clause is split off at a comma only when it has at least this many words."""

# Words whose trailing full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "no", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "approx"}
)
_TOKEN = re.compile(r"\S+")
_SENTENCE_END = ".!?"
_CLAUSE_END = ",;:"


def split_for_speech(text: str) -> list[str]:
    """``text`` in speakable pieces, in order; joined with spaces they give ``text`` back
    (whitespace normalised)."""
    pieces: list[str] = []
    current: list[str] = []
    for token in _TOKEN.findall(text):
        current.append(token)
        if _ends_sentence(token) or (token[-1] in _CLAUSE_END and len(current) >= MIN_CLAUSE_WORDS):
            pieces.append(" ".join(current))
            current = []
    if current:
        pieces.append(" ".join(current))
    return pieces


def _ends_sentence(token: str) -> bool:
    stripped = token.rstrip("\"')]")
    if not stripped or stripped[-1] not in _SENTENCE_END:
        return False
    if stripped[-1] == ".":
        word = stripped[:-1].lower()
        # "9.30." ends a sentence; "a.m." and "Dr." do not.
        return word not in _ABBREVIATIONS
    return True
