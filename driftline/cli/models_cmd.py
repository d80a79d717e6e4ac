"""``driftline models init|list|show|promote|rollback|rollout``: the registry from the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import time
from datetime import UTC, datetime
from typing import Any

from driftline.cli.rollout_cmd import register_start
from driftline.errors import ConfigError
from driftline.registry import Registry
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="model versions and what serves")
    verbs = models.add_subparsers(dest="verb", metavar="VERB", required=True)

    init = verbs.add_parser("init", help="train, validate and publish version 1 from a file or a topic range")
    init.add_argument("model_file")
    init.add_argument("--data", help="training data (.csv or .avro) with a label column")
    init.add_argument("--label-column", default="label", help="label column of --data (default: label)")
    init.add_argument("--from-topic", action="store_true",
                      help="train on the model's labelled rows in Kafka between --start and --end")
    init.add_argument("--start", help="with --from-topic: ISO 8601 time or epoch ms")
    init.add_argument("--end", help="with --from-topic: ISO 8601 time or epoch ms (default now)")
    init.set_defaults(handler=init_model)

    listing = verbs.add_parser("list", help="versions of every model (or one)")
    listing.add_argument("model", nargs="?")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_models)

    show = verbs.add_parser("show", help="one version's metrics, lineage and provenance")
    show.add_argument("model")
    show.add_argument("version", nargs="?", help="default: the deployed version")
    show.set_defaults(handler=show_model)

    promote = verbs.add_parser("promote", help="deploy a validated version (manual promotion)")
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument("--reason", default="promoted by an operator")
    promote.set_defaults(handler=lambda a, s: move(a, s, "promote", a.version))

    rollback = verbs.add_parser("rollback", help="serve an earlier version again")
    rollback.add_argument("model")
    rollback.add_argument("--to", required=True, dest="version", help="version to serve")
    rollback.add_argument("--reason", default="rolled back by an operator")
    rollback.set_defaults(handler=lambda a, s: move(a, s, "rollback", a.version))
    register_start(verbs)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def init_model(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.reference import parse_time
    from driftline.topics import create_topics
    from schemas import read_table
    from trainers.dataset import assemble, from_table
    from trainers.job import TrainingJob, Trigger
    from trainers.modelfile import load_model_config

    config = load_model_config(args.model_file)
    create_topics(settings)
    if args.from_topic:
        if args.data or not args.start:
            raise ConfigError("--from-topic takes --start (and --end), not --data")
        end = parse_time(args.end) if args.end else int(time.time() * 1000)
        dataset = assemble(settings, config.name, parse_time(args.start), end)
    elif args.data:
        dataset = from_table(read_table(args.data), args.label_column)
    else:
        raise ConfigError("give --data FILE (with --label-column) or --from-topic --start T")
    with Registry(settings) as registry:
        run = TrainingJob(settings, config, registry).run(Trigger(f"init:{dataset.hash}", "init", "models init"),
                                                          dataset=dataset)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(run["candidate_metrics"].items()))
    if run["status"] != "published":
        print(f"{config.name}: run {run['run_id']} {run['status']}: {run['reason']}")
        return 1
    print(f"{config.name} v{run['candidate_version']} published from {run['rows']} rows ({metrics}); "
          f"run {run['run_id']}")
    return 0


def list_models(args: argparse.Namespace, settings: Settings) -> int:
    with Registry(settings) as registry:
        records = registry.models(args.model)
        deployed = {m: d["version"] for m, d in registry.deployments().items()}
    rows = [{"model": r["model"], "version": r["version"],
             "status": "serving" if deployed.get(r["model"]) == r["version"] else r["status"],
             "created": _when(r["created_at"]), "parent": r["parent_version"] or "-", "run": r["run_id"] or "-",
             "metrics": {k: round(v, 4) for k, v in sorted(r["metrics"].items())},
             "bytes": r["artifact_bytes"]} for r in records]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no models published yet" + (f" for {args.model}" if args.model else ""))
        return 0
    print(f"{'MODEL':<16} {'VERSION':<8} {'STATUS':<10} {'CREATED':<20} {'PARENT':<7} {'RUN':<17} METRICS")
    for r in rows:
        metrics = " ".join(f"{k}={v}" for k, v in r["metrics"].items())
        print(f"{r['model']:<16} {r['version']:<8} {r['status']:<10} {r['created']:<20} {r['parent']:<7} "
              f"{r['run']:<17} {metrics}")
    return 0


def show_model(args: argparse.Namespace, settings: Settings) -> int:
    with Registry(settings) as registry:
        version = args.version or (registry.deployments().get(args.model) or {}).get("version")
        record = registry.model_metadata(args.model, version) if version else None
        if record is None:
            raise ConfigError(f"no version {version!r} of model {args.model!r}" if version
                              else f"model {args.model!r} has no deployed version")
        run = registry.run(record["run_id"]) if record["run_id"] else None
    out: dict[str, Any] = {
        "model": record["model"], "version": record["version"], "task": record["task"],
        "created": _when(record["created_at"]), "parent_version": record["parent_version"],
        "metrics": record["metrics"], "artifact_bytes": record["artifact_bytes"],
        "artifact_sha256": record["artifact_sha256"], "signature": f"{record['signature_alg']} ({record['key_id']})",
        "features": [f"{f['name']}:{f['type']}" for f in record["spec"]["features"]],
        "run_id": record["run_id"]}
    if run is not None:
        out.update(trigger=f"{run['trigger_type']} {run['trigger']}", dataset_rows=run["rows"],
                   dataset_hash=run["dataset_hash"],
                   lineage=[f"{r['topic']}[{r['partition']}] {r['start_offset']}..{r['end_offset']}"
                            for r in run["lineage"]],
                   checks=[f"{'pass' if c['passed'] else 'FAIL'} {c['name']}: {c['value']} (limit {c['threshold']})"
                           for c in run["checks"]])
    print(json.dumps(out, indent=2))
    return 0


def move(args: argparse.Namespace, settings: Settings, action: str, version: str) -> int:
    with Registry(settings) as registry:
        record = registry.deploy(args.model, version, action, reason=args.reason, actor=actor())
    print(f"{args.model}: {action} to v{version} (was v{record['previous_version'] or '-'})")
    return 0


def actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "operator"
