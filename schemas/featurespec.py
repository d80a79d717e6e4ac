"""A model's feature spec: the input contract that schema skew is measured against.

Like TFDV's schema: each feature has a type, whether it is required, a
category domain or a numeric range, and the null rate it may show. A spec is
declared in YAML/JSON or inferred from a reference file, travels as the Avro
``driftline.FeatureSpec`` with every model version and profile, and is
checked client-side by the SDK when the application asks for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from schemas.columns import CATEGORICAL, NUMERIC, FeatureFrame
from schemas.errors import ContractError, SpecViolation
from schemas.tables import Table, read_table

FEATURE_TYPES = ("float", "int", "bool", "string")
DEFAULT_MAX_CATEGORIES = 50


@dataclass(frozen=True)
class FeatureDef:
    """One feature of the contract."""

    name: str
    type: str
    required: bool = True
    domain: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_null_rate: float = 0.0
    allow_nan: bool = False

    def __post_init__(self) -> None:
        if self.type not in FEATURE_TYPES:
            raise ContractError(
                f"feature {self.name!r}: type {self.type!r} is not one of {', '.join(FEATURE_TYPES)}"
            )
        if not 0.0 <= self.max_null_rate <= 1.0:
            raise ContractError(f"feature {self.name!r}: max_null_rate must be within [0, 1]")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ContractError(f"feature {self.name!r}: min {self.min} exceeds max {self.max}")

    @property
    def kind(self) -> str:
        return NUMERIC if self.type in ("float", "int") else CATEGORICAL


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered features of one model version.

    >>> spec = FeatureSpec("churn", (FeatureDef("age", "int", min=18, max=99),
    ...                              FeatureDef("plan", "string", domain=("free", "pro"))))
    >>> spec.kinds()
    {'age': 'numeric', 'plan': 'categorical'}
    """

    model: str
    features: tuple[FeatureDef, ...]
    version: str = ""
    _index: dict[str, FeatureDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ContractError(f"feature spec for {self.model!r} names a feature twice")
        self._index.update((f.name, f) for f in self.features)

    def __getitem__(self, name: str) -> FeatureDef:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def kinds(self) -> dict[str, str]:
        """Feature name -> numeric | categorical (read-only: shared by every caller)."""
        return self._kinds

    @cached_property
    def _kinds(self) -> dict[str, str]:
        # built once: a serving node asks for every request
        return {f.name: f.kind for f in self.features}

    def content_hash(self) -> str:
        """Stable hash of the contract's content (not its version label)."""
        body = json.dumps(self.to_dict()["features"], sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        features = []
        for f in self.features:
            d = asdict(f)
            d["domain"] = list(f.domain) if f.domain is not None else None
            features.append(d)
        return {"model": self.model, "version": self.version, "features": features}

    to_avro = to_dict  # the Avro record has exactly these fields

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        try:
            model = data["model"]
            raw_features = data["features"]
        except (KeyError, TypeError):
            raise ContractError("a feature spec needs 'model' and a 'features' list") from None
        features = []
        for i, raw in enumerate(raw_features):
            if not isinstance(raw, dict) or "name" not in raw or "type" not in raw:
                raise ContractError(f"feature #{i} of the spec needs at least 'name' and 'type'")
            unknown = set(raw) - set(FeatureDef.__dataclass_fields__)
            if unknown:
                raise ContractError(
                    f"feature {raw['name']!r}: unknown key(s) {', '.join(sorted(unknown))}"
                )
            domain = raw.get("domain")
            features.append(
                FeatureDef(**{**raw, "domain": tuple(str(d) for d in domain) if domain else None})
            )
        return cls(str(model), tuple(features), str(data.get("version", "")))

    from_avro = from_dict

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        """Read a spec declared in YAML or JSON."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ContractError(f"cannot read feature spec {path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ContractError(f"feature spec {path} is not valid YAML/JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        data = self.to_dict()
        if path.suffix == ".json":
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False))

    # ---------------------------------------------------------- inference
    @classmethod
    def infer(
        cls,
        table: Table,
        model: str,
        *,
        version: str = "",
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        null_rate_slack: float = 0.01,
    ) -> FeatureSpec:
        """Infer a spec from reference columns.

        Ranges are what the reference covered (values outside it are "out of
        range" skew); a text column with at most ``max_categories`` distinct
        values gets that set as its domain; the allowed null rate is the
        reference's plus ``null_rate_slack``.
        """
        features = []
        for name, column in table.columns.items():
            kind = table.types[name]
            rows = len(column)
            nulls = table.null_mask(name)
            if kind in ("float", "int"):
                values = column.astype(float)
                present = values[~nulls]
                finite = present[np.isfinite(present)]
                null_rate = float(nulls.mean()) if rows else 0.0
                features.append(FeatureDef(
                    name, kind,
                    required=null_rate < 1.0,
                    min=float(finite.min()) if finite.size else None,
                    max=float(finite.max()) if finite.size else None,
                    max_null_rate=min(1.0, round(null_rate + null_rate_slack, 6)) if null_rate else 0.0,
                    allow_nan=bool(finite.size < present.size),
                ))
            else:
                null_rate = float(nulls.mean()) if rows else 0.0
                present = column[~nulls]
                if kind == "bool":
                    domain: tuple[str, ...] | None = ("false", "true")
                else:
                    distinct = sorted(set(present.tolist()))
                    domain = tuple(distinct) if len(distinct) <= max_categories else None
                features.append(FeatureDef(
                    name, kind,
                    required=null_rate < 1.0,
                    domain=domain,
                    max_null_rate=min(1.0, round(null_rate + null_rate_slack, 6)) if null_rate else 0.0,
                ))
        return cls(model, tuple(features), version)

    @classmethod
    def infer_file(cls, path: str | Path, model: str, **kwargs: Any) -> FeatureSpec:
        return cls.infer(read_table(path), model, **kwargs)

    # --------------------------------------------------------- validation
    def violations(self, frame: FeatureFrame) -> list[str]:
        """What in these rows breaks the contract outright (the SDK's client-side check).

        Hard violations only: a required feature missing from every row, a
        value of the wrong type, NaN/inf where the spec forbids it, a feature
        the spec does not know. Softer findings (an unseen category, a value
        out of range, a null rate above the spec) are the monitor's skew
        statistics, measured per window rather than refused per event.
        """
        problems: list[str] = []
        present = set(frame.numeric_names) | set(frame.categorical_names)
        for declared in self.features:
            if declared.required and declared.name not in present:
                problems.append(f"required feature {declared.name!r} is missing")
        for name in sorted(present - set(self.names)):
            problems.append(f"feature {name!r} is not in the spec of {self.model!r}")
        for j, name in enumerate(frame.numeric_names):
            f = self._index.get(name)
            if f is None:
                continue
            if f.kind != NUMERIC:
                problems.append(f"feature {name!r} should be {f.type} but numbers were sent")
                continue
            column = frame.numeric[:, j][~frame.numeric_null[:, j]]
            if not f.allow_nan and not np.isfinite(column).all():
                problems.append(f"feature {name!r} has NaN or infinite values, which its spec forbids")
            if f.type == "int":
                finite = column[np.isfinite(column)]
                if (finite != np.round(finite)).any():
                    problems.append(f"feature {name!r} is int but non-integral numbers were sent")
        for name in frame.categorical_names:
            f = self._index.get(name)
            if f is not None and f.kind != CATEGORICAL:
                problems.append(f"feature {name!r} should be {f.type} but text was sent")
        for m in frame.mismatched[:5]:
            f = self._index.get(m["name"])
            expected = f.type if f else "a number, string or bool"
            problems.append(
                f"feature {m['name']!r} row {m['row']}: got {m['type']} {m['text']}, expected {expected}"
            )
        return problems

    def validate(self, frame: FeatureFrame) -> None:
        problems = self.violations(frame)
        if problems:
            raise SpecViolation("; ".join(problems))

    def with_version(self, version: str) -> FeatureSpec:
        return replace(self, version=version, _index={})
