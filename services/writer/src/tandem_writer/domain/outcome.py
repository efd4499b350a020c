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

    @property
    def transient(self) -> bool:
        return self.error is not None and not self.error.permanent
