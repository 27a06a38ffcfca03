"""baresip's own log lines, through structlog.

The binding sends baresip's native lines and its own to ``logging``; libre prints its debug
lines to stderr itself, some with a plain ``fprintf`` (``sip: msg decode err``, one per
garbage datagram) that no handler can catch. Left alone both reach the output as plain text
(breaking JSON log output) and a flood of datagrams becomes a flood of lines. Here:

- the ``baresip`` loggers go through the rate-limited ``StackLog`` (warnings and errors),
  but for baresip's registration outcomes, which the engine reports itself;
- libre's debug handler does too;
- the process's stderr (file descriptor 2) is read by a thread while the engine runs: lines
  that look like libre's (``module: text``) go through ``StackLog``, everything else (a
  Python traceback, a C library's abort message) goes on to the real stderr as it came.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading

from agent.sip.baresip import native
from agent.sip.stack_log import StackLog

#: What libre prints: a lower-case module name, a colon, the message.
_LIBRE_LINE = re.compile(rb"^[a-z][a-z0-9_]{1,15}: ")
#: baresip's warnings about a registration's outcome: the engine reports every outcome
#: itself, one ``sip_registration`` line per change of state (agent.sip.registration).
_REGISTRATION_LINE = re.compile(r"^(?:reg: |ua: SIP(?: fallback)? register failed)")


class _Forwarder(logging.Handler):
    def __init__(self, stack_log: StackLog) -> None:
        super().__init__(level=logging.WARNING)
        self._log = stack_log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if _REGISTRATION_LINE.match(message):
                return
            self._log.line(message, error=record.levelno >= logging.ERROR)
        except Exception:
            self.handleError(record)


class StackLogs:
    """While open, baresip's and libre's lines go through structlog (see the module)."""

    def __init__(self) -> None:
        self._log = StackLog("baresip")
        self._lock = threading.Lock()
        self._handler = _Forwarder(self._log)
        self._stderr: int | None = None
        self._reader: threading.Thread | None = None

    def open(self) -> None:
        logger = logging.getLogger("baresip")
        logger.addHandler(self._handler)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        native.capture_libre_debug(self._line)
        self._capture_stderr()

    def capture_libre_debug(self) -> None:
        """Again after the stack started (its start-up resets libre's debug output)."""
        native.capture_libre_debug(self._line)

    def _line(self, text: str) -> None:
        with self._lock:
            self._log.line(text)

    def _capture_stderr(self) -> None:
        read_fd, write_fd = os.pipe()
        self._stderr = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._reader = threading.Thread(
            target=self._pump, args=(read_fd, self._stderr), name="stderr-filter", daemon=True
        )
        self._reader.start()

    def _pump(self, read_fd: int, stderr: int) -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                if _LIBRE_LINE.match(raw):
                    self._line(raw.decode("utf-8", "replace"))
                else:
                    with contextlib.suppress(OSError):
                        os.write(stderr, raw)

    def close(self) -> None:
        logging.getLogger("baresip").removeHandler(self._handler)
        saved, self._stderr = self._stderr, None
        if saved is not None:
            # The pipe's last writer goes: the reader sees its end and stops.
            os.dup2(saved, 2)
            os.close(saved)
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
