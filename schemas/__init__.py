"""The driftline event contract: Avro schemas, their codec and the feature spec.

This package depends on nothing else in driftline, so any service (or a
third-party consumer) can decode driftline topics with it alone.
"""

from schemas.codec import MAGIC, Codec
from schemas.columns import FeatureFrame, encode_columns, encode_rows
from schemas.errors import ContractError, DecodeError, EncodeError, SpecViolation
from schemas.featurespec import FeatureDef, FeatureSpec
from schemas.tables import Table, read_table

__all__ = [
    "MAGIC",
    "Codec",
    "ContractError",
    "DecodeError",
    "EncodeError",
    "FeatureDef",
    "FeatureFrame",
    "FeatureSpec",
    "SpecViolation",
    "Table",
    "encode_columns",
    "encode_rows",
    "read_table",
]
