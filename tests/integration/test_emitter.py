"""The serving node's prediction emitter reports Kafka's verdict: ack mode never answers for a lost event."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from serving.emitter import Emission, PredictionEmitter

pytestmark = pytest.mark.integration


def emission(request_id: str) -> Emission:
    return Emission("m", "1", {"x": [1.0]}, np.array([0.5]), None, [request_id], 0)


async def emit_one(settings, request_id: str) -> bool:
    emitter = PredictionEmitter(settings, mode="ack")
    emitter.start()
    try:
        return await asyncio.wait_for(emitter.emit(emission(request_id)), 30)
    finally:
        await emitter.close(10)


def test_ack_mode_reports_a_stored_event(settings):
    assert asyncio.run(emit_one(settings, "stored")) is True


def test_ack_mode_reports_an_event_kafka_did_not_take(settings):
    """No predictions topic under this prefix (the broker creates none): delivery fails within 2 s."""
    missing = settings.replace(topic_prefix=f"missing{uuid.uuid4().hex[:8]}.",
                               extra_kafka={"delivery.timeout.ms": "2000"})
    assert asyncio.run(emit_one(missing, "lost")) is False
