"""`python -m tandem_bench [--quick]` — see tandem_bench.run."""

from __future__ import annotations

import argparse

from tandem_bench import soak
from tandem_bench.run import PHASE_GROUPS, main

parser = argparse.ArgumentParser(prog="tandem_bench", description="Tandem's benchmark: make bench")
parser.add_argument("--quick", action="store_true", help="short phases; finishes in under two minutes")
parser.add_argument("--keep-work", action="store_true", help="keep the run's logs and load-generator output")
parser.add_argument("--profile", action="store_true", help="py-spy the services during the throughput phase")
parser.add_argument(
    "--only",
    help=f"comma-separated phase groups ({', '.join(PHASE_GROUPS)}); the report goes to bench/results/partial.md",
)
parser.add_argument("--soak", action="store_true", help="only the soak phase (issue 15): bench/results/<stamp>-soak.md")
parser.add_argument(
    "--soak-rates",
    default=",".join(str(r) for r in soak.DEFAULT_RATES),
    help="with --soak: comma-separated edit rates per second",
)
parser.add_argument("--soak-seconds", type=float, help="with --soak: seconds of edits at each rate")
args = parser.parse_args()
if args.soak:
    rates = tuple(float(r) for r in args.soak_rates.split(","))
    raise SystemExit(soak.main(quick=args.quick, rates=rates, seconds=args.soak_seconds))
groups = tuple(g.strip() for g in args.only.split(",")) if args.only else PHASE_GROUPS
unknown = set(groups) - set(PHASE_GROUPS)
if unknown:
    parser.error(f"unknown phase groups: {', '.join(sorted(unknown))}")
raise SystemExit(main(quick=args.quick, keep_work=args.keep_work, profile=args.profile, groups=groups))
