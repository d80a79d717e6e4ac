"""Schema skew findings: how a window's rows break the model's feature spec.

Counts come from the window summary (so they merge like everything else);
this module turns them into findings with rates and thresholds. Kinds:
``missing`` (a required feature absent from events), ``unexpected`` (a
feature the spec does not know), ``type_mismatch``, ``unseen_category``,
``out_of_range``, ``nan`` (NaN/inf where the spec forbids them) and
``null_rate`` (more nulls than the spec allows, by a binomial test, so a
small window with a few nulls is not a spike).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scipy import special as _special

from schemas import FeatureSpec
from streams.drift.profile import OTHER
from streams.drift.summary import CategoricalSummary, WindowSummary

RATE_KINDS = ("missing", "unexpected", "type_mismatch", "unseen_category", "out_of_range", "nan")


@dataclass(frozen=True)
class SkewFinding:
    kind: str
    count: int
    rate: float
    threshold: float
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def skew_findings(
    summary: WindowSummary,
    spec: FeatureSpec,
    *,
    rate_threshold: float = 0.01,
    null_alpha: float = 0.001,
    min_count: int = 3,
) -> dict[str, list[SkewFinding]]:
    """Findings per feature (features without findings are left out).

    A finding needs ``min_count`` offending rows as well as a rate over the
    threshold: one odd value among a handful of rows is 50 % of a tiny
    window and no evidence of a broken pipeline.
    """
    out: dict[str, list[SkewFinding]] = {}
    rows = max(summary.rows, 1)
    for name, s in summary.features.items():
        findings = []
        for kind in RATE_KINDS:
            count = s.skew.get(kind, 0)
            if count >= min_count and count / rows > rate_threshold:
                examples: list[str] = []
                if kind == "unseen_category" and isinstance(s, CategoricalSummary):
                    examples = [k for k in sorted(s.unseen) if k != OTHER][:5]
                findings.append(SkewFinding(kind, count, count / rows, rate_threshold, examples))
        if name in spec and summary.rows:
            allowed = spec[name].max_null_rate
            nulls = s.nulls - s.skew.get("missing", 0)  # a missing feature is reported as missing
            if nulls > allowed * summary.rows:
                # One-sided binomial test: could this many nulls happen at the allowed rate?
                p = float(_special.bdtrc(nulls - 1, summary.rows, max(allowed, 1e-6)))  # binom.sf, light import
                if p < null_alpha:
                    findings.append(SkewFinding("null_rate", nulls, nulls / rows, allowed))
        if findings:
            out[name] = findings
    return out
