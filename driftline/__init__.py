"""driftline: keep machine-learning models healthy in production, on Apache Kafka.

The public SDK is what this module exports; everything else is implementation.
"""

import importlib
from typing import Any

from driftline.alerts import Alert, AlertSubscriber
from driftline.errors import ConfigError, DeliveryError, DriftlineError
from driftline.producer import Producer
from driftline.settings import Settings, load_settings

__all__ = [
    "Alert",
    "AlertSubscriber",
    "ConfigError",
    "DeliveryError",
    "DriftlineError",
    "Producer",
    "Settings",
    "check",
    "load_settings",
    "profile",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``driftline.check`` and ``driftline.profile``, loaded on first use (PEP 562).

    They pull in the statistics (numpy, scipy); an application that only
    produces events with the SDK, and a serving node, never pay for that.
    """
    if name in ("check", "profile"):
        return getattr(importlib.import_module("driftline.api"), name)
    raise AttributeError(f"module 'driftline' has no attribute {name!r}")
