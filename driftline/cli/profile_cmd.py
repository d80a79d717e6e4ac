"""``driftline profile`` and ``driftline check``: the monitor's statistics, offline.

``profile`` builds a reference profile from a CSV/Parquet/Avro file and publishes it
to the compacted ``profiles`` topic (or writes it to a file with ``-o``).
``check`` compares a file with a profile and exits 0 (clean), 1 (drift or
skew) or 2 (bad input): a data-validation gate for CI pipelines.
"""

from __future__ import annotations

import argparse
import json
import time

from driftline.api import calibration_of, check, spec_kinds, to_table, without
from driftline.control import publish_once
from driftline.errors import ConfigError
from driftline.settings import Settings
from schemas import FeatureSpec
from schemas.tables import NULL_TOKENS
from streams.drift.decision import DriftPolicy, DriftReport
from streams.drift.profile import Profile


def register(sub: argparse._SubParsersAction) -> None:
    profile = sub.add_parser("profile", help="build a reference profile from a CSV, Parquet or Avro file")
    profile.add_argument("reference", nargs="?", help="reference data (.csv, .parquet or .avro)")
    profile.add_argument("--from-topic", choices=("features", "predictions"),
                         help="read the reference from this topic instead of a file (with --start/--end)")
    profile.add_argument("--start", help="with --from-topic: ISO 8601 time or epoch ms (inclusive)")
    profile.add_argument("--end", help="with --from-topic: ISO 8601 time or epoch ms (exclusive; default now)")
    profile.add_argument("--model", required=True, help="model the profile belongs to")
    profile.add_argument("--version", default="1", help="profile version (default 1)")
    profile.add_argument("--spec", help="declared feature spec (YAML/JSON); inferred when omitted")
    profile.add_argument("--segment", default="", metavar="COLUMN[,COLUMN]",
                         help="categorical columns whose values are judged as cohorts of their own "
                              "(top --top-segments values with enough rows, the rest as __other__)")
    profile.add_argument("--top-segments", type=int, default=10, help="segment values kept per column (default 10)")
    profile.add_argument("--min-segment-rows", type=int, default=200,
                         help="reference rows a segment value needs for a reference of its own (default 200)")
    profile.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE",
                         help="the model's expected quality (e.g. accuracy=0.91): the decay baseline when "
                              "the model has no ModelRecord")
    add_null_values(profile)
    profile.add_argument("--label-column", help="with --score-column: calibrate the model's scores on these labels "
                         "(check then estimates its quality on unlabelled data)")
    profile.add_argument("--score-column", help="the model's score: P(positive), P(predicted class), or the value")
    profile.add_argument("--class-column", help="multi-class models: the predicted class")
    profile.add_argument("--task", choices=("classification", "regression"), default="classification",
                         help="what the model does (default classification)")
    profile.add_argument("-o", "--output", help="write the profile to this file instead of publishing it")
    profile.set_defaults(handler=build_profile)

    check = sub.add_parser("check", help="compare a data file with a profile; exit 1 on drift or skew")
    check.add_argument("current", help="current data (.csv, .parquet or .avro)")
    check.add_argument("--profile", required=True, help="profile file written by 'driftline profile -o'")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--reference", metavar="FILE",
                       help="the reference rows too: a domain classifier then tries to tell them from the current rows")
    add_null_values(check)
    check.add_argument("--false-alarm-rate", type=float, default=DriftPolicy.false_alarm_rate,
                       help="chance that stable data is flagged, over all features (default 0.01)")
    check.add_argument("--method", action="append", default=[], metavar="FEATURE=STAT",
                       help="decide FEATURE with STAT's permutation p-value (ks, psi, js, wasserstein; "
                            "default chi2 for every feature)")
    check.add_argument("--skew-rate", type=float, default=DriftPolicy.skew_rate,
                       help="share of rows with a skew finding that counts as skew (default 0.01)")
    check.set_defaults(handler=run_check)


def add_null_values(command: argparse.ArgumentParser) -> None:
    command.add_argument("--null-values", type=parse_null_values, default=NULL_TOKENS, metavar="TEXT[,TEXT]",
                         help="cell texts read as nulls, comma-separated (an empty item is the empty cell); "
                              f"default {','.join(sorted(NULL_TOKENS))!r}")


def parse_null_values(text: str) -> frozenset[str]:
    """``--null-values ',NA,-'``: the empty cell, NA and -; each item stripped of surrounding spaces."""
    return frozenset(item.strip() for item in text.split(","))


def parse_metrics(items: list[str]) -> dict[str, float]:
    metrics = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            metrics[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--metric takes NAME=NUMBER, got {item!r}") from None
        if not name.strip():
            raise ConfigError(f"--metric takes NAME=NUMBER, got {item!r}")
    return metrics


def build_profile(args: argparse.Namespace, settings: Settings) -> int:
    if args.from_topic:
        from driftline.reference import parse_time, read_model_rows

        if args.reference or not args.start:
            raise ConfigError("--from-topic takes --start (and --end), not a file")
        end = parse_time(args.end) if args.end else int(time.time() * 1000)
        table, source = read_model_rows(settings, args.from_topic, args.model, parse_time(args.start), end)
    spec = FeatureSpec.load(args.spec) if args.spec else None
    if spec is not None and spec.model != args.model:
        raise ConfigError(f"the spec {args.spec} is for model {spec.model!r}, not {args.model!r}")
    if args.from_topic:
        pass  # read above
    elif args.reference:
        kinds = spec_kinds(spec) if spec is not None else None
        table, source = to_table(args.reference, kinds, args.null_values), str(args.reference)
    else:
        raise ConfigError("give a reference file, or --from-topic with --start")
    segment_by = tuple(c.strip() for c in args.segment.split(",") if c.strip())
    if args.top_segments < 1 or args.min_segment_rows < 1:
        raise ConfigError("--top-segments and --min-segment-rows must be at least 1")
    if bool(args.label_column) != bool(args.score_column):
        raise ConfigError("--label-column and --score-column go together (both name columns of the reference)")
    outcome = [c for c in (args.label_column, args.score_column, args.class_column) if c]
    for column in outcome:
        if column not in table.columns:
            raise ConfigError(f"column {column!r} is not in the reference (it has {', '.join(sorted(table.columns))})")
    profile = Profile.build(without(table, outcome), args.model, version=args.version, spec=spec, source=source,
                            segment_by=segment_by, top_segments=args.top_segments,
                            min_segment_rows=args.min_segment_rows)
    profile.metrics = parse_metrics(args.metric)
    if outcome:
        profile.calibration = calibration_of(table, profile, args.label_column, args.score_column,
                                             args.class_column, args.task)
    if args.output:
        profile.save(args.output)
        print(f"profile {args.model} v{args.version}: {table.rows} rows, "
              f"{len(profile.features)} features{segments_text(profile)} -> {args.output}")
        return 0
    publish_once(settings, "profiles", args.model.encode(), profile.to_bytes())
    print(f"profile {args.model} v{args.version}: {table.rows} rows, {len(profile.features)} features"
          f"{segments_text(profile)} -> topic {settings.topic('profiles')}")
    return 0


def segments_text(profile: Profile) -> str:
    return f", {len(profile.segments)} segments ({', '.join(sorted(profile.segments))})" if profile.segments else ""


def parse_methods(items: list[str]) -> dict[str, str]:
    methods = {}
    for item in items:
        name, sep, stat = item.partition("=")
        if not sep or not name or not stat:
            raise ConfigError(f"--method expects FEATURE=STAT, got {item!r}")
        methods[name] = stat
    return methods


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 < args.false_alarm_rate < 1:
        raise ConfigError(f"--false-alarm-rate must be between 0 and 1, got {args.false_alarm_rate}")
    profile = Profile.load(args.profile)
    policy = DriftPolicy(false_alarm_rate=args.false_alarm_rate, methods=parse_methods(args.method),
                         skew_rate=args.skew_rate)
    for name in policy.methods:  # an unknown --method statistic is refused before any row is read
        if name in profile.features:
            try:
                policy.method_for(name, profile.features[name].kind)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    report = check(args.current, profile, policy, null_values=args.null_values, reference_data=args.reference)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
    return 1 if report.drift or report.skew else 0


def print_report(report: DriftReport) -> None:
    print(f"model {report.model}, reference v{report.reference_version}: {report.rows} rows, "
          f"alpha per feature {report.alpha:.2g}")
    print(f"{'feature':<20} {'kind':<12} {'test':<12} {'value':>10} {'p-value':>10}  result")
    for name, f in report.features.items():
        value = "" if f.value is None else f"{f.value:.4g}"
        threshold = "" if f.p_value is None else f"{f.p_value:.2g}"
        verdict = "DRIFT" if f.drift else "ok"
        skew = "; ".join(
            f"{s.kind} {s.rate:.1%}" + (f" e.g. {', '.join(s.examples)}" if s.examples else "")
            for s in f.skew)
        note = f" ({f.note})" if f.note else ""
        print(f"{name:<20} {f.kind:<12} {f.method:<12} {value:>10} {threshold:>10}  {verdict}"
              f"{'  SKEW: ' + skew if skew else ''}{note}")
    for segment, found in sorted(report.drifted_segments().items()):
        print(f"segment {segment}: DRIFT in " + ", ".join(
            f"{f.name} ({f.method} p={f.p_value:.2g} < {f.alpha:.2g}, {f.rows} rows)" for f in found))
    if report.segments and not report.drifted_segments():
        print(f"segments: {len(report.segments)} judged, no drift inside any")
    if report.multivariate is not None:
        m = report.multivariate
        print(f"multivariate (PCA, {m.tests['components']:.0f} axes, {m.tests['explained_variance']:.0%} of variance): "
              f"{'DRIFT' if m.drift else 'ok'}, p={m.p_value:.2g} (alpha {m.alpha:.2g}), "
              f"{m.tests['tail_share']:.1%} of rows beyond the reference's top-decile error" + (
                  f" ({m.note})" if "not judged" in m.note else ""))
    if report.domain is not None:
        d = report.domain
        print(f"domain classifier: {'DRIFT' if d.drift else 'ok'}, held-out AUC {d.auc:.3f}, p={d.p_value:.2g} "
              f"(alpha {d.alpha:.2g})")
    for name, e in report.estimated.items():
        realised = f", realised {report.realised[name]:.4f}" if name in report.realised else ""
        print(f"estimated {name}: {e.value:.4f} [{e.lower:.4f}, {e.upper:.4f}]{realised}")
    print(f"drift: {'yes' if report.drift else 'no'} ({report.drift_share:.0%} of features), "
          f"skew: {'yes' if report.skew else 'no'}")
