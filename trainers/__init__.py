"""Retraining consumers: from an alert to a validated, signed model on the models topic."""
