"""Where alerts go: a webhook (CloudEvents structured or binary), a Slack-compatible webhook, a command.

Each delivery carries the alert's id (the CloudEvent ``id`` / ``ce-id``), so
a receiver can recognise a redelivery: the notifier's own dedupe state makes
one delivery per alert id the rule, and the id makes the rare exception
(a crash between a sink's answer and the state's write) harmless.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import aiohttp

from driftline.notify.config import SinkConfig


class DeliveryFailed(Exception):
    """A sink refused or did not answer; the reason is the message."""


def slack_text(event: dict[str, Any]) -> str:
    data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
    return (f"*{str(event.get('severity', 'info')).upper()}* `{event.get('type', '')}` "
            f"{event.get('model') or event.get('subject', '')}: {data.get('message', '')}")


async def deliver(sink: SinkConfig, event: dict[str, Any], raw: bytes, session: aiohttp.ClientSession) -> None:
    """One attempt to hand ``event`` (``raw``: its JSON as on the topic) to ``sink``."""
    timeout = aiohttp.ClientTimeout(total=sink.timeout_s)
    try:
        if sink.type == "command":
            process = await asyncio.create_subprocess_exec(*sink.command, stdin=asyncio.subprocess.PIPE,
                                                           stdout=asyncio.subprocess.DEVNULL,
                                                           stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await asyncio.wait_for(process.communicate(raw), sink.timeout_s)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise DeliveryFailed(f"command did not finish within {sink.timeout_s:g} s") from None
            if process.returncode != 0:
                raise DeliveryFailed(f"command exited {process.returncode}: {err.decode(errors='replace')[:200]}")
            return
        if sink.type == "slack":
            body, headers = json.dumps({"text": slack_text(event)}).encode(), {"Content-Type": "application/json"}
        elif sink.mode == "binary":  # CloudEvents HTTP binary mode: attributes as headers, data as the body
            body = json.dumps(event.get("data", {})).encode()
            headers = {"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": str(event.get("id")),
                       "ce-source": str(event.get("source")), "ce-type": str(event.get("type")),
                       "ce-time": str(event.get("time")), "ce-subject": str(event.get("subject", ""))}
        else:  # structured mode: the whole event as the body
            body, headers = raw, {"Content-Type": "application/cloudevents+json"}
        async with session.post(sink.url, data=body, headers={**headers, **sink.headers}, timeout=timeout) as answer:
            if answer.status >= 300:
                raise DeliveryFailed(f"{sink.url} answered HTTP {answer.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300]) from None


def backoff(attempt: int, cap: float = 30.0) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, …): doubling from 0.5 s, capped, jittered."""
    return min(cap, 0.5 * 2 ** (attempt - 1)) * (0.8 + 0.4 * random.random())


class RateLimit:
    """A token bucket per sink: ``rate`` deliveries a second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def acquire(self) -> float:
        """Wait for a token; returns how long it waited (the agent waits: nothing queues without bound)."""
        waited = 0.0
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return waited
            pause = (1.0 - self.tokens) / self.rate
            waited += pause
            await asyncio.sleep(pause)
