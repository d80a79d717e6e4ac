"""``driftline runs list|show|replay``: what the trainer decided, and reproducing its data."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from driftline.errors import ConfigError
from driftline.registry import Registry
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="training runs: decisions, lineage, verdicts")
    verbs = runs.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="every run (latest record of each), oldest first")
    listing.add_argument("--model")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_runs)
    show = verbs.add_parser("show", help="one run with every check")
    show.add_argument("run_id")
    show.set_defaults(handler=show_run)
    replay = verbs.add_parser("replay", help="rebuild a run's dataset from its lineage and compare hashes")
    replay.add_argument("run_id")
    replay.set_defaults(handler=replay_run)


def list_runs(args: argparse.Namespace, settings: Settings) -> int:
    with Registry(settings) as registry:
        runs = registry.runs(args.model)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "checks"} for r in runs]))
        return 0
    if not runs:
        print("no runs yet")
        return 0
    print(f"{'RUN':<17} {'MODEL':<14} {'STATUS':<10} {'TRIGGER':<9} {'STARTED':<20} {'ROWS':>7} {'VERSION':<8} REASON")
    for r in runs:
        started = datetime.fromtimestamp(r["started_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r['run_id']:<17} {r['model']:<14} {r['status']:<10} {r['trigger_type']:<9} {started:<20} "
              f"{r['rows']:>7} {r['candidate_version'] or '-':<8} {r['reason'][:100]}")
    return 0


def _run(settings: Settings, run_id: str) -> dict:
    with Registry(settings) as registry:
        run = registry.run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r}; see 'driftline runs list'")
    return run


def show_run(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(_run(settings, args.run_id), indent=2))
    return 0


def replay_run(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.offsets import OffsetRange
    from trainers.dataset import read_dataset

    run = _run(settings, args.run_id)
    if not run["lineage"]:
        raise ConfigError(f"run {args.run_id} has no Kafka lineage (status {run['status']}, "
                          f"trigger {run['trigger_type']})")
    dataset = read_dataset(settings, run["model"], [OffsetRange(**r) for r in run["lineage"]])
    same = dataset.hash == run["dataset_hash"]
    print(json.dumps({"run_id": args.run_id, "rows": dataset.rows, "dataset_hash": dataset.hash,
                      "recorded_hash": run["dataset_hash"], "identical": same}))
    return 0 if same else 1
