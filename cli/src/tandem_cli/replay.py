"""`tandem replay`: dead letters (or commands still waiting on a retry tier) back onto `tandem.commands`.

A replay is a new execution linked to the one it repeats (`original_execution_id`), with the attempt count reset
and `x-replayed-from=<topic>@<partition>:<offset>`. Commands whose change was applied since are skipped, and the
writer would skip them too (same idempotency key). `--remap` republishes the original change event instead, so the
mapper maps it again with the instance's current configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

from tandem_cli.audit import audited
from tandem_shared.contracts import Headers, SyncCommand, utcnow
from tandem_shared.contracts.topics import CHANGES, COMMANDS_DLQ
from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.redis.idempotency import RedisIdempotencyStore
from tandem_shared.replay import (
    Decision,
    Filters,
    Note,
    Parked,
    Replays,
    Verdict,
    decide,
    find_changes,
    parked_topics,
    pending_start,
    read_parked,
    root_execution,
    select,
)
from tandem_shared.settings import CommonSettings

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """ISO-8601 (a date, or a time; UTC unless it says otherwise) or an age such as 30m, 2h, 7d."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = relative.groups()
        return (now or utcnow()) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: give an ISO-8601 time (2026-11-26T07:00) or an age (2h)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _describe(entry: Parked) -> str:
    command = entry.command
    assert command is not None
    who = command.identity.email or command.identity.contact_key
    error = entry.headers.get(Headers.EXCEPTION_MESSAGE, "")
    attempts = entry.headers.get(Headers.ATTEMPT, "?")
    return (
        f"{entry.where}  {entry.timestamp:%Y-%m-%d %H:%M:%S}  {command.instance_id}  {who}  "
        f"execution {root_execution(command)}  attempts {attempts}  {error}"
    )


def _note(entry: Parked, command: SyncCommand, how: str) -> Note:
    return Note(
        log=f"Operator replay by {os.environ.get('USER', 'unknown')} from {entry.where}",
        summary=f"Replayed {how} from {entry.where} (execution {root_execution(command)})",
        data_in={k: v for k, v in entry.headers.items() if k.startswith("x-")},
    )


async def replay(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    kafka = KafkaConnection.from_env("tandem-replay", args.bootstrap_servers or settings.kafka_bootstrap_servers)
    topics = parked_topics(args.source)
    start = await pending_start(kafka, args.writer_group, topics) if args.source == "retry" else None
    filters = Filters(args.instance, args.since, args.until, args.execution)
    selection = select(await read_parked(kafka, topics, start), filters)
    changes = None
    if args.remap:
        changes = await find_changes(kafka, event_ids={e.command.event_id for e in selection.chosen if e.command})
    store = RedisIdempotencyStore.from_url(args.redis_url or settings.redis_url)
    try:
        decisions = await decide(selection, store, changes)
    finally:
        await store.close()
    action = ("would replay" if args.dry_run else "replay") + (" (remap)" if args.remap else "")
    chosen = [d for d in decisions if d.verdict is Verdict.REPLAY]
    producer = KafkaProducer(kafka) if chosen and not args.dry_run else None
    if producer is not None:
        await producer.start()
    try:
        for decision in decisions:
            label = f"{action} " if decision.verdict is Verdict.REPLAY else f"{f'skip ({decision.verdict.value})':<22}"
            print(f"{label} {_describe(decision.entry)}")
            if producer is not None and decision.verdict is Verdict.REPLAY:
                await _publish(Replays(producer), decision)
    finally:
        if producer is not None:
            await producer.stop()
    counts = Counter(d.verdict for d in decisions)
    verb = "would replay" if args.dry_run else "replayed"
    print(
        f"{len(selection.chosen)} matching in {', '.join(topics)}: {verb} {len(chosen)}, "
        f"already applied {counts[Verdict.APPLIED]}"
        + (f", original change no longer on {CHANGES} {counts[Verdict.CHANGE_GONE]}" if args.remap else "")
        + (f", replayed before {counts[Verdict.REPLAYED_BEFORE]}" if counts[Verdict.REPLAYED_BEFORE] else "")
        + (f", older copies {len(selection.duplicates)}" if selection.duplicates else "")
        + (f", unreadable (not commands) {len(selection.unreadable)}" if selection.unreadable else "")
        + (". Dry run: nothing was published." if args.dry_run else ".")
    )
    return 0


async def _publish(replays: Replays, decision: Decision) -> None:
    entry, command = decision.entry, decision.command
    if decision.change is None:
        await replays.command(entry, command, _note(entry, command, "the same command"))
        return
    how = "the original change, re-mapped with the current configuration"
    await replays.change(
        decision.change,
        original_execution_id=root_execution(command),
        replayed_from=entry.where,
        note=_note(entry, command, how),
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(replay(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay",
        help="republish dead letters (or pending retries) to the command topic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from",
        dest="source",
        choices=["dlq", "retry"],
        required=True,
        help=f"dlq: {COMMANDS_DLQ}; retry: commands still waiting on the retry tiers (not yet consumed)",
    )
    parser.add_argument("--instance", help="only this instance's commands")
    parser.add_argument(
        "--since", type=parse_when, help="only records parked at or after this time (ISO-8601 or an age: 2h)"
    )
    parser.add_argument("--until", type=parse_when, help="only records parked at or before this time")
    parser.add_argument("--execution", help="only this execution (its id or the id of the execution it repeats)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; publish nothing")
    parser.add_argument(
        "--remap",
        action="store_true",
        help=f"republish the original change from {CHANGES} so the current instance configuration maps it again",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--redis-url", help="Redis with the writer's applied changes (default: REDIS_URL)")
    parser.add_argument(
        "--writer-group",
        default=os.environ.get("TANDEM_WRITER_GROUP_ID", "tandem-writer"),
        help="the writer's consumer group, for --from retry (default: TANDEM_WRITER_GROUP_ID or tandem-writer)",
    )
    parser.set_defaults(handler=run)
    audited(parser, "replay", lambda a: (f"replay --from {a.source}" + (" --dry-run" if a.dry_run else ""), a.instance))
