"""``driftline report``: one self-contained HTML drift report, from a file, a topic's rows, or the monitor's windows.

Three sources, one page (:mod:`driftline.htmlreport`):

* a file (or DataFrame, through the API) checked against a profile;
* ``--from-topic features|predictions --start --end``: a model's rows on a
  topic in a time range, checked against its profile;
* ``--window-from --window-to``: the monitor's merged window summaries on
  ``stats`` in that range, merged into one (summaries merge exactly) and
  judged against the profile; the model's quality windows (realised and
  estimated) in the range are drawn too.

The page is built from summaries, so its size does not grow with the rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from driftline.api import check, check_tables
from driftline.errors import ConfigError
from driftline.settings import Settings
from schemas import Codec
from streams.drift.decision import DriftPolicy, DriftReport, compare
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="write a self-contained HTML drift report")
    report.add_argument("current", nargs="?", help="current data (.csv, .parquet or .avro)")
    report.add_argument("--profile", help="profile file (default: the model's latest on the profiles topic)")
    report.add_argument("--model", help="model (with --from-topic or --window-from)")
    report.add_argument("--reference", metavar="FILE", help="reference rows too: adds the domain classifier")
    report.add_argument("--from-topic", choices=("features", "predictions"),
                        help="check the model's rows on this topic between --start and --end")
    report.add_argument("--start", help="with --from-topic: ISO 8601 time or epoch ms")
    report.add_argument("--end", help="with --from-topic: ISO 8601 time or epoch ms (default now)")
    report.add_argument("--window-from", help="the monitor's windows starting at or after this time")
    report.add_argument("--window-to", help="… and before this time (default now)")
    report.add_argument("--false-alarm-rate", type=float, default=DriftPolicy.false_alarm_rate)
    report.add_argument("--title", help="page title")
    report.add_argument("-o", "--output", required=True, help="the HTML file to write")
    report.set_defaults(handler=write_report)


def _profile(args: argparse.Namespace, settings: Settings, model: str | None) -> Profile:
    if args.profile:
        return Profile.load(args.profile)
    if not model:
        raise ConfigError("give --profile, or --model to use the model's profile on the profiles topic")
    from driftline.follow import read_compacted

    raw = read_compacted(settings, settings.topic("profiles")).get(model.encode())
    if raw is None:
        raise ConfigError(f"no profile for model {model!r} on {settings.topic('profiles')}; publish one "
                          f"with 'driftline profile' or give --profile")
    return Profile.from_bytes(raw)


def write_report(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.reference import parse_time

    if not 0 < args.false_alarm_rate < 1:
        raise ConfigError(f"--false-alarm-rate must be between 0 and 1, got {args.false_alarm_rate}")
    policy = DriftPolicy(false_alarm_rate=args.false_alarm_rate)
    sources = [bool(args.current), bool(args.from_topic), bool(args.window_from)]
    if sum(sources) != 1:
        raise ConfigError("give one source: a data file, --from-topic with --start, or --window-from")
    quality: list[dict] = []
    if args.current:
        profile = _profile(args, settings, args.model)
        report = check(args.current, profile, policy, reference_data=args.reference)
    elif args.from_topic:
        from driftline.reference import read_model_rows

        if not args.model or not args.start:
            raise ConfigError("--from-topic takes --model and --start (and --end)")
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else int(time.time() * 1000)
        profile = _profile(args, settings, args.model)
        table, _ = read_model_rows(settings, args.from_topic, args.model, start, end)
        report = check_tables([table], profile, policy, where=lambda row: f"row {row}")
        quality = quality_windows(settings, args.model, start, end)
    else:
        if not args.model:
            raise ConfigError("--window-from takes --model")
        start = parse_time(args.window_from)
        end = parse_time(args.window_to) if args.window_to else int(time.time() * 1000)
        profile = _profile(args, settings, args.model)
        report = window_report(settings, args.model, start, end, profile, policy)
        quality = quality_windows(settings, args.model, start, end)
    page = report.to_html(title=args.title, quality=quality)
    try:
        Path(args.output).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    verdict = "drift" if report.drift else "no drift"
    print(f"report {report.model}: {report.rows:,} rows, {len(report.features)} features, {verdict}"
          f"{', skew' if report.skew else ''} -> {args.output} ({len(page.encode()) / 1024:.0f} KiB)")
    return 0


def window_report(settings: Settings, model: str, start: int, end: int, profile: Profile,
                  policy: DriftPolicy) -> DriftReport:
    """The monitor's merged windows of ``model`` starting in [start, end), merged into one and judged."""
    from driftline.follow import read_compacted

    codec = Codec.default()
    merged: WindowSummary | None = None
    windows = 0
    for key, value in read_compacted(settings, settings.topic("stats"), since_ms=start).items():
        if not key.decode(errors="replace").startswith(f"{model}:"):
            continue
        record = codec.decode(value, "driftline.WindowSummary")
        if record["stage"] != "merged" or not start <= record["window_start"] < end:
            continue
        if record["reference_version"] != profile.version:
            continue  # counted on another profile's bins: not comparable
        summary = WindowSummary.from_avro(record)
        merged = summary if merged is None else merged.merge(summary)
        windows += 1
    if merged is None:
        raise ConfigError(f"no merged windows of {model!r} against profile v{profile.version} between "
                          f"{start} and {end} on {settings.topic('stats')}")
    return compare(merged, profile, policy)


def quality_windows(settings: Settings, model: str, start: int, end: int) -> list[dict]:
    """The model's quality windows (realised and estimated) that start in [start, end)."""
    from driftline.follow import read_compacted

    codec = Codec.default()
    out = []
    for value in read_compacted(settings, settings.topic("quality"), since_ms=start).values():
        record = codec.decode(value, "driftline.QualitySummary")
        if record["model"] == model and start <= record["window_start"] < end:
            out.append(record)
    return sorted(out, key=lambda r: (r["window_start"], r["model_version"], r["estimated"]))
