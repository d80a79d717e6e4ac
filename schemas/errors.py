"""Errors of the event contract.

Every consumer turns these into dead-letter records, so their messages are
written for the person reading the dead-letter topic: what was wrong and where.
"""


class ContractError(ValueError):
    """Base class: an event or spec does not meet the contract."""


class DecodeError(ContractError):
    """Bytes that are not a decodable driftline event (garbage, unknown schema, truncated)."""


class EncodeError(ContractError):
    """A record that cannot be encoded under its schema (missing field, wrong type)."""


class SpecViolation(ContractError):
    """Rows that break a model's feature spec (a field the spec forbids, NaN where not allowed)."""


class RegistryUnavailable(Exception):
    """The schema registry cannot be asked (down, refusing our credentials): not the event's fault.

    Deliberately *not* a :class:`ContractError`: a consumer must never dead-letter
    a good event because the registry was away; it stops (and resumes from its
    committed offsets) instead.
    """
