"""driftline: keep machine-learning models healthy in production, on Apache Kafka.

The public SDK is what this module exports; everything else is implementation.
"""

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
    "load_settings",
]
__version__ = "0.1.0"
