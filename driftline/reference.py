"""Reference data already in Kafka: the rows of a model on a topic between two times.

``driftline profile --from-topic`` builds a profile from training data that
was produced as Features events, instead of from a file. Times become offsets
through ``offsets_for_times`` (:mod:`driftline.offsets`, the same exact
ranges a training run's lineage uses); the range read is recorded as the
profile's source, so it can be read again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from driftline.errors import ConfigError
from driftline.offsets import ModelRecords, ranges_for_times
from driftline.settings import Settings
from schemas import FeatureFrame, Table

log = logging.getLogger(__name__)


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-11-25T10:00:00Z``) or epoch milliseconds, as epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"{text!r} is neither an ISO 8601 time nor epoch milliseconds") from None


def read_model_rows(settings: Settings, topic_kind: str, model: str, start_ms: int, end_ms: int,
                    timeout: float = 30.0) -> tuple[Table, str]:
    """The model's rows on ``features`` or ``predictions`` with broker timestamps in [start, end)."""
    if topic_kind not in ("features", "predictions"):
        raise ConfigError(f"--from-topic must be features or predictions, got {topic_kind!r}")
    if end_ms <= start_ms:
        raise ConfigError("the end of the time range must be after its start")
    topic = settings.topic(topic_kind)
    ranges = ranges_for_times(settings, topic, start_ms, end_ms)
    reader = ModelRecords(settings, model)
    items = [(record["columns"], len(record["request_ids"])) for record in reader.read(ranges, timeout)
             if "columns" in record]
    if reader.skipped:
        log.warning("skipped %d undecodable events in %s", reader.skipped, topic)
    if not items:
        raise ConfigError(f"no {model!r} rows on {topic} between {start_ms} and {end_ms}")
    source = f"{topic}@" + ",".join(f"{r.partition}:{r.start_offset}-{r.end_offset}" for r in sorted(ranges))
    return Table.from_frame(FeatureFrame.from_records(items)), source
