"""A writer `Target` (`tandem_writer.targets.base`) that answers from a script of outcomes and remembers its writes."""

from __future__ import annotations

from tandem_shared.contracts import InstanceConfig, SyncCommand, System
from tandem_writer.domain.outcome import WriteOutcome


def applied(summary: str = "Mailchimp member u7@example.com is subscribed") -> WriteOutcome:
    return WriteOutcome(True, summary, response={"status": "subscribed"})


class ScriptedTarget:
    """Each write takes the next outcome (an exception is raised, as a target bug would); once the script is used
    up, every write is applied."""

    def __init__(self, *outcomes: WriteOutcome | Exception, system: System = System.MAILCHIMP) -> None:
        self.system = system
        self.outcomes = list(outcomes)
        self.writes: list[SyncCommand] = []
        self.closed = False

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        self.writes.append(command)
        outcome = self.outcomes.pop(0) if self.outcomes else applied()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def close(self) -> None:
        self.closed = True
