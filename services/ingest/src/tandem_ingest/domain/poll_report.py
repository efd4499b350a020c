"""What one catch-up poll round of one instance did: read, published, recognized, skipped, where the cursor went."""

from __future__ import annotations

from dataclasses import dataclass, field

from tandem_ingest.domain.cursor import Position


@dataclass
class PollReport:
    instance_id: str
    started_from: Position | None = None
    read: int = 0
    published: list[str] = field(default_factory=list)  # event ids
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # why records could not become events
    cursor_before: Position | None = None
    cursor_after: Position | None = None
    initialized: bool = False
    stopped_early: str | None = None
    deferred_settled: int = 0  # deferred deliveries this round's reads answered
    read_alone: int = 0  # deferred users the pages did not list, read one request each
    more_to_read: bool = False  # the round stopped at its page limit with more changes behind it

    @property
    def found_changes(self) -> bool:
        return self.cursor_before is not None and self.cursor_after != self.cursor_before

    @property
    def worth_tracing(self) -> bool:
        """A round that found nothing leaves no trace record: one per interval per instance would drown the rest."""
        return self.found_changes or bool(self.skipped) or bool(self.published) or self.deferred_settled > 0

    def summary(self) -> str:
        return (
            f"Catch-up poll read {self.read} changed user(s): {len(self.published)} not received by webhook "
            f"(published now), {self.duplicates} already received"
            + (f", {len(self.skipped)} unreadable" if self.skipped else "")
            + (f"; answered {self.deferred_settled} deferred delivery(ies)" if self.deferred_settled else "")
            + (f", {self.read_alone} read on their own" if self.read_alone else "")
        )
