"""Reading topics back in tests (real broker, no mocks)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, Message, TopicPartition

from driftline.kafka_clients import common_config, make_admin
from driftline.settings import Settings
from driftline.topics import message_count


def read_topic(settings: Settings, topic: str, expected: int | None = None, timeout: float = 30.0) -> list[Message]:
    """Every message on ``topic`` from the beginning (waits for ``expected`` of them)."""
    consumer = Consumer({**common_config(settings), "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = [TopicPartition(topic, p, 0) for p in partitions]
        consumer.assign(assignment)
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        messages: list[Message] = []
        deadline = time.monotonic() + timeout

        def done() -> bool:
            if expected is not None:
                return len(messages) >= expected
            # up to each partition's high watermark: transaction markers take offsets but are no messages
            positions = consumer.position([TopicPartition(topic, p) for p in partitions])
            return all(tp.offset >= highs[tp.partition] or highs[tp.partition] == 0 for tp in positions)

        while not done() and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    messages.append(message)
        return messages
    finally:
        consumer.close()


def topic_count(settings: Settings, topic: str) -> int:
    return message_count(settings, topic)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a driftline process needs to reach ``settings``' cluster with its topics."""
    import os

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix, "DRIFTLINE_PARTITIONS": str(settings.partitions)}
    security = {"security_protocol": settings.security_protocol, "sasl_mechanism": settings.sasl_mechanism,
                "sasl_username": settings.sasl_username, "sasl_password": settings.sasl_password,
                "ssl_cafile": settings.ssl_cafile}
    env |= {f"DRIFTLINE_{k.upper()}": v for k, v in security.items() if v and v != "PLAINTEXT"}
    return env


def group_members(settings: Settings, group: str, timeout: float = 10.0) -> dict[str, set[tuple[str, int]]]:
    """A consumer group's members (by group.instance.id, else member id) and their assigned partitions,
    when the group is stable; {} while it rebalances."""
    admin = make_admin(settings)  # held: its futures never complete once it is gone
    try:
        description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout)
    except KafkaException:  # the group's coordinator is still being chosen (NOT_COORDINATOR): not yet
        return {}
    if description.state != ConsumerGroupState.STABLE:
        return {}
    return {member.group_instance_id or member.member_id:
            {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions}
            for member in description.members}


def wait_for_members(settings: Settings, group: str, count: int, timeout: float = 60.0) -> dict[str, set]:
    """Wait until ``count`` members of ``group`` each hold partitions (a worker is reading, not starting)."""
    deadline = time.monotonic() + timeout
    while True:
        members = group_members(settings, group)
        if len(members) == count and all(members.values()):
            return members
        assert time.monotonic() < deadline, f"{group}: {count} members with partitions in {timeout:.0f} s"
        time.sleep(0.2)
