"""The result of one write attempt, as the rest of the writer sees it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tandem_shared.contracts import ErrorInfo, SyncCommand


@dataclass(frozen=True)
class WriteOutcome:
    ok: bool
    summary: str
    response: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    # What was written when it is less than the command (a source check left fields out); None: the command.
    written: SyncCommand | None = None
    # False: the attempt succeeded without writing anything (a source check left nothing to write).
    wrote: bool = True
    # Not written yet, for a reason that passes by itself (a write-back whose in-flight write has not landed): try
    # the same attempt again after this many seconds.
    defer_s: float | None = None

    @property
    def transient(self) -> bool:
        return self.error is not None and not self.error.permanent
