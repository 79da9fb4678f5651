"""A text progress bar on stderr (redrawn in place on a terminal, one line per step otherwise)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, stream=None, enabled: bool = True, width: int = 24):
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()

    def _line(self, label: str) -> str:
        filled = int(self.width * min(self.done, self.total) / self.total)
        elapsed = time.perf_counter() - self.start
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {elapsed:5.0f}s  {label}"

    def show(self, label: str) -> None:
        """Shows what runs now, without advancing (terminal only)."""
        if self.tty:
            self.stream.write("\r\x1b[K" + self._line(label))
            self.stream.flush()

    def advance(self, label: str, steps: int = 1) -> None:
        self.done += steps
        if not self.enabled:
            return
        if self.tty:
            self.show(label)
        else:
            self.stream.write(self._line(label) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
