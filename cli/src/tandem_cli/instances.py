"""`tandem instances …`: check, publish and operate instance configurations on the `tandem.instances` topic."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import redis
import yaml
from pydantic import ValidationError

from tandem_cli.audit import audited
from tandem_cli.common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Unavailable,
    add_broker_option,
    fail,
    kafka_connection,
    run,
)
from tandem_cli.vendors import vendor_clients
from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.instances import instance_json_schema
from tandem_shared.instance_store import put_instance, read_instances, read_snapshot, remove_instance
from tandem_shared.instance_validation.live import read_live_schemas
from tandem_shared.instance_validation.problems import LiveSchemas, Problem
from tandem_shared.instance_validation.rules import direction_summary, validate_instance
from tandem_shared.redis.client import connect_sync
from tandem_shared.redis.keys import held_key

# What an operator changes with pause/resume, not with a configuration file: `apply` keeps the current values
# unless the file sets them.
OPERATIONAL_FIELDS = ("paused", "discard_held_on_resume")


class ConfigFileError(Exception):
    def __init__(self, code: int, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.code = code
        self.lines = lines


def load_config(path: Path) -> InstanceConfig:
    """The file as an InstanceConfig; `ConfigFileError` says what is wrong, field by field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(EXIT_USAGE, [f"{path}: cannot be read ({exc.strerror})"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(EXIT_USAGE, [f"{path}: not valid YAML{where}: {problem}"]) from exc
    if not isinstance(data, dict):
        raise ConfigFileError(EXIT_USAGE, [f"{path}: expected a mapping of settings (id, name, direction, …)"])
    try:
        return InstanceConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: {exc.error_count()} error(s), nothing was applied"]
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(file)"
            lines.append(f"  error    {where}: {_pydantic_message(error)}")
        raise ConfigFileError(EXIT_INVALID, lines) from exc


def _pydantic_message(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "missing":
        return "required; add it"
    if error["type"] == "extra_forbidden":
        return "not a setting of this section; check the spelling (see docs/instance.schema.json)"
    return message.removeprefix("Value error, ")


def _print_problems(problems: list[Problem], label: str) -> None:
    for problem in problems:
        print(f"  {label:<8} {problem.field}: {problem.message}", file=sys.stderr)


async def _read_live(config: InstanceConfig) -> LiveSchemas:
    async with vendor_clients(timeout_s=10.0) as clients:
        return await read_live_schemas(config, mailchimp=clients.mailchimp, accessplanit=clients.accessplanit)


def _check(config: InstanceConfig, *, offline: bool) -> bool:
    live = LiveSchemas() if offline else run(_read_live(config), timeout=60, what="the vendor APIs")
    report = validate_instance(config, live)
    _print_problems(report.errors, "error")
    _print_problems(report.warnings, "warning")
    if offline:
        note = "live checks skipped (--offline): merge tags, fields, types, audience and account"
        print(f"  note     {note}", file=sys.stderr)
    return report.ok


def _load_or_exit(path: Path) -> InstanceConfig | int:
    try:
        return load_config(path)
    except ConfigFileError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return exc.code


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.file)
    if isinstance(config, int):
        return config
    if not _check(config, offline=args.offline):
        print(f"{args.file}: instance '{config.id}' is not valid", file=sys.stderr)
        return EXIT_INVALID
    print(
        f"{args.file}: instance '{config.id}' is valid ({len(config.mappings)} mappings, "
        f"{direction_summary(config.direction)})"
    )
    return EXIT_OK


def next_config(file_config: InstanceConfig, current: InstanceConfig | None) -> InstanceConfig:
    """What `apply` publishes: the file, at the next version, keeping the operational state the file leaves out."""
    update: dict[str, Any] = {"version": (current.version + 1) if current else 1}
    if current is not None:
        for name in OPERATIONAL_FIELDS:
            if name not in file_config.model_fields_set:
                update[name] = getattr(current, name)
    return file_config.model_copy(update=update)


def same_settings(a: InstanceConfig, b: InstanceConfig) -> bool:
    return a.model_dump(exclude={"version"}) == b.model_dump(exclude={"version"})


def cmd_apply(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.file)
    if isinstance(config, int):
        return config
    if not _check(config, offline=args.offline):
        print(f"{args.file}: instance '{config.id}' is not valid; nothing was applied", file=sys.stderr)
        return EXIT_INVALID
    current = run(read_instances(kafka_connection(args)), timeout=args.timeout, what="Kafka").get(config.id)
    new = next_config(config, current)
    if current is not None and same_settings(new, current):
        print(f"instance '{config.id}' is unchanged (version {current.version}); nothing was published")
        return EXIT_OK
    run(put_instance(kafka_connection(args), new), timeout=args.timeout, what="Kafka")
    verb = "updated" if current else "created"
    state = "paused" if new.paused else "active"
    print(f"instance '{new.id}' {verb}: version {new.version}, {state}, {direction_summary(new.direction)}")
    return EXIT_OK


def _instances(args: argparse.Namespace) -> dict[str, InstanceConfig]:
    return run(read_instances(kafka_connection(args)), timeout=args.timeout, what="Kafka")


def cmd_list(args: argparse.Namespace) -> int:
    instances = sorted(_instances(args).values(), key=lambda i: i.id)
    if not instances:
        print("no instances; create one with `tandem instances apply -f FILE`")
        return EXIT_OK
    held = _held_counts([i.id for i in instances])
    rows = [("ID", "VERSION", "STATE", "DIRECTION", "AUDIENCE", "HELD", "NAME")]
    for i in instances:
        count = held.get(i.id)
        rows.append(
            (
                i.id,
                str(i.version),
                "paused" if i.paused else "active",
                i.direction.value,
                i.mailchimp.audience_id,
                "-" if count is None else str(count),
                i.name,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    instance = _instances(args).get(args.id)
    if instance is None:
        return fail(f"no instance '{args.id}'", EXIT_NOT_FOUND)
    data = instance.model_dump(mode="json")
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    instance = _instances(args).get(args.id)
    if instance is None:
        return fail(f"no instance '{args.id}'", EXIT_NOT_FOUND)
    if instance.paused:
        print(f"instance '{args.id}' is already paused (version {instance.version})")
        return EXIT_OK
    paused = instance.model_copy(update={"paused": True, "version": instance.version + 1})
    run(put_instance(kafka_connection(args), paused), timeout=args.timeout, what="Kafka")
    print(
        f"instance '{args.id}' paused (version {paused.version}): nothing is written and its changes are held "
        f"until `tandem instances resume {args.id}`"
    )
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    instance = _instances(args).get(args.id)
    if instance is None:
        return fail(f"no instance '{args.id}'", EXIT_NOT_FOUND)
    if not instance.paused:
        print(f"instance '{args.id}' is not paused (version {instance.version}); nothing to do")
        return EXIT_OK
    version = instance.version + 1
    update: dict[str, Any] = {"paused": False, "version": version, "discard_held_on_resume": args.discard_buffered}
    resumed = instance.model_copy(update=update)
    run(put_instance(kafka_connection(args), resumed), timeout=args.timeout, what="Kafka")
    held = _held_counts([args.id]).get(args.id)
    what = "held changes" if held is None else f"{held} held change(s)"
    fate = "are discarded (traced as discarded)" if args.discard_buffered else "are processed in order"
    print(f"instance '{args.id}' resumed (version {version}); its {what} {fate}")
    return EXIT_OK


def _confirmed(instance_id: str, what: str) -> bool:
    """An operator at a terminal types the id again; a script says --yes."""
    print(
        f"Delete {what}? Every service stops syncing it and its Redis state is removed; the console keeps its history.",
        file=sys.stderr,
    )
    try:
        answer = input(f"Type the instance id ({instance_id}) to confirm: ")
    except EOFError:
        return False
    return answer.strip() == instance_id


def cmd_delete(args: argparse.Namespace) -> int:
    snapshot = run(read_snapshot(kafka_connection(args)), timeout=args.timeout, what="Kafka")
    instance = snapshot.instances.get(args.id)
    if instance is None and args.id not in snapshot.deleted:
        return fail(f"no instance '{args.id}'", EXIT_NOT_FOUND)
    if not args.yes:
        if not sys.stdin.isatty():
            return fail("deleting an instance needs --yes when not run at a terminal; nothing was deleted", EXIT_USAGE)
        what = f"instance '{args.id}' ({instance.name})" if instance else f"the state of deleted instance '{args.id}'"
        if not _confirmed(args.id, what):
            print("nothing was deleted")
            return EXIT_OK
    try:
        removed = run(
            remove_instance(kafka_connection(args), args.redis_url, args.id), timeout=args.timeout, what="Kafka"
        )
    except redis.RedisError as exc:
        # The tombstone is on the topic already (Redis is reached only once Kafka acknowledged it).
        message = (
            f"instance '{args.id}' is deleted on tandem.instances, but its Redis state could not be removed "
            f"({exc}); run the command again once Redis ({args.redis_url}) answers"
        )
        return fail(message, EXIT_UNAVAILABLE)
    state = f"{removed} Redis key(s) of its state removed"
    if instance is None:
        print(f"instance '{args.id}' was deleted already; {state}")
    else:
        print(f"instance '{args.id}' deleted: every service stops syncing it; {state}")
    return EXIT_OK


def cmd_schema(_: argparse.Namespace) -> int:
    print(json.dumps(instance_json_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _held_counts(instance_ids: list[str]) -> dict[str, int]:
    """How many changes each instance holds, when REDIS_URL points at Tandem's Redis (best effort)."""
    url = os.environ.get("REDIS_URL")
    if not url or not instance_ids:
        return {}
    try:
        client = connect_sync(url)
        try:
            return {i: int(client.xlen(held_key(i))) for i in instance_ids}
        finally:
            client.close()
    except redis.RedisError:
        return {}


def _guarded(handler: Any) -> Any:
    def call(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except Unavailable as exc:
            return fail(str(exc), EXIT_UNAVAILABLE)

    return call


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "instances",
        help="check, apply and operate instance configurations",
        description="Instance configurations live on the compacted tandem.instances topic; every service follows "
        "it live. Files are YAML, described by docs/instance.schema.json (`tandem instances schema`).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="instances_command", required=True)

    def command(name: str, handler: Any, help_text: str, *, broker: bool = True) -> argparse.ArgumentParser:
        p = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if broker:
            add_broker_option(p)
        p.set_defaults(handler=_guarded(handler))
        return p

    for name, handler, help_text, broker in (
        ("validate", cmd_validate, "check a configuration file against the rules and both vendors' schemas", False),
        ("apply", cmd_apply, "validate a file, then publish it as the instance's next version", True),
    ):
        p = command(name, handler, help_text, broker=broker)
        p.add_argument("-f", "--file", type=Path, required=True, help="the instance's YAML file")
        p.add_argument("--offline", action="store_true", help="skip the checks that read Mailchimp and accessplanit")
        if name == "apply":
            audited(p, "apply_instance", lambda a: (f"instances apply {a.file.name}", None))
    command("list", cmd_list, "list the instances, their versions and whether they are paused")
    show = command("show", cmd_show, "print an instance's configuration")
    show.add_argument("id")
    show.add_argument("--format", choices=("yaml", "json"), default="yaml")
    pause = command("pause", cmd_pause, "pause an instance: nothing is written, its changes are held")
    pause.add_argument("id")
    audited(pause, "pause_instance", lambda a: (f"instances pause {a.id}", a.id))
    resume = command("resume", cmd_resume, "resume a paused instance: held changes are processed in order")
    resume.add_argument("id")
    resume.add_argument(
        "--discard-buffered", action="store_true", help="discard the changes held while paused instead (traced)"
    )
    audited(
        resume,
        "resume_instance",
        lambda a: (f"instances resume {a.id}" + (" --discard-buffered" if a.discard_buffered else ""), a.id),
    )
    delete = command("delete", cmd_delete, "delete an instance: every service stops syncing it, its Redis state goes")
    delete.add_argument("id")
    audited(delete, "delete_instance", lambda a: (f"instances delete {a.id}", a.id))
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    delete.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Tandem's Redis, whose keys of the instance are removed (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    command("schema", cmd_schema, "print the JSON Schema of configuration files", broker=False)
