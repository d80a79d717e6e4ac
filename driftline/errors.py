"""Errors a user acts on. The CLI prints ``str(error)`` as one sentence and exits 2."""


class DriftlineError(Exception):
    """Base class for errors that carry a message meant for the user."""


class ConfigError(DriftlineError):
    """A setting, config file or command-line argument is wrong."""


class BrokerError(DriftlineError):
    """No Kafka broker could be started or reached."""


class DeliveryError(DriftlineError):
    """Kafka refused or lost a produced event; the producer raises instead of dropping it."""
