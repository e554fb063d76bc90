"""Release gates: thresholds in YAML, checked against a champion-vs-challenger comparison.

A relative gate uses the bootstrap CI lower bound, not the point estimate: `max_drop: 0.005` means
"the challenger must not be worse by more than 0.005 with the comparison's confidence", so it
fails when ci_low < -0.005. Noise on a small eval set therefore cannot slip a regression through.

A relative gate also refuses a vacuous comparison: when more than `max_champion_empty_rate`
(default 0.05) of the champion's outputs are empty, "not worse than the champion" means "not worse
than a model that printed nothing", so the gate fails and says so. Evaluate the champion with a
prompt it can answer (`lmf eval compare` picks the base model's best prompt by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmfoundry.config import load_yaml
from lmfoundry.errors import LmfError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AbsoluteGate(_Strict):
    """The challenger's mean score must lie within [min, max]."""

    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> AbsoluteGate:
        if self.min is None and self.max is None:
            raise ValueError(f"absolute gate on {self.metric!r} needs 'min' or 'max'")
        return self


class RelativeGate(_Strict):
    """The challenger must not drop below the champion by more than max_drop (CI lower bound)."""

    metric: str
    max_drop: float = Field(ge=0)


class Limit(_Strict):
    max: float = Field(ge=0)


class GateSpec(_Strict):
    """The whole gates file."""

    absolute: list[AbsoluteGate] = Field(default_factory=list)
    relative: list[RelativeGate] = Field(default_factory=list)
    latency_p95_s: Limit | None = None
    """Challenger's 95th-percentile end-to-end seconds per request."""
    cost_per_1m_tokens: Limit | None = None
    """Challenger's USD per million generated tokens (from the price per hour and throughput)."""
    max_champion_empty_rate: float = Field(default=0.05, ge=0, le=1)
    """Relative gates fail when more of the champion's outputs than this are empty."""

    @model_validator(mode="after")
    def _not_empty(self) -> GateSpec:
        if not (self.absolute or self.relative or self.latency_p95_s or self.cost_per_1m_tokens):
            raise ValueError("no gates defined")
        return self


def load_gates(path: str | Path) -> GateSpec:
    data = load_yaml(path)
    try:
        return GateSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'gates'}: {e['msg']}" for e in exc.errors())
        raise LmfError(f"{path}: invalid gates: {problems}") from exc


@dataclass(frozen=True)
class GateCheck:
    name: str
    rule: str
    value: str
    passed: bool


@dataclass
class GateReport:
    passed: bool
    checks: list[GateCheck]
    context: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        """A table for a pull-request comment."""
        verdict = "PASSED ✅" if self.passed else "FAILED ❌"
        lines = [f"### Evaluation gates: {verdict}", ""]
        if self.context:
            c = self.context
            lines += [
                f"Champion `{c.get('champion_model')}` vs challenger `{c.get('challenger_model')}` "
                f"on `{c.get('task')}`: {c.get('n')} examples, {c.get('confidence', 0.95):.0%} bootstrap CI.",
                "",
            ]
        lines += ["| check | rule | value | result |", "|---|---|---|---|"]
        for check in self.checks:
            result = "✅ pass" if check.passed else "❌ fail"
            lines.append(f"| {check.name} | {check.rule} | {check.value} | {result} |")
        return "\n".join(lines) + "\n"


def check_gates(spec: GateSpec, comparison: dict[str, Any]) -> GateReport:
    """Evaluate every gate in `spec`; a gate naming a metric the comparison lacks is an error."""
    checks = [_absolute(g, comparison) for g in spec.absolute]
    checks += [_relative(g, comparison, spec.max_champion_empty_rate) for g in spec.relative]
    if spec.latency_p95_s is not None:
        value = _challenger(comparison, ("latency", "e2e_s_p95"))
        checks.append(_limit("latency p95 (s)", value, spec.latency_p95_s.max, "{:.3f}"))
    if spec.cost_per_1m_tokens is not None:
        value = _challenger(comparison, ("cost_per_1m_tokens",))
        checks.append(_limit("cost per 1M tokens (USD)", value, spec.cost_per_1m_tokens.max, "{:.2f}"))
    context = {
        k: comparison.get(k) for k in ("task", "champion_model", "challenger_model", "n", "confidence")
    }
    return GateReport(passed=all(c.passed for c in checks), checks=checks, context=context)


def _metric(comparison: dict[str, Any], name: str) -> dict[str, Any]:
    metrics = comparison.get("metrics", {})
    if name not in metrics:
        raise LmfError(
            f"gate metric {name!r} is not in the comparison; available: {', '.join(sorted(metrics))}"
        )
    return metrics[name]


def _absolute(gate: AbsoluteGate, comparison: dict[str, Any]) -> GateCheck:
    value = float(_metric(comparison, gate.metric)["challenger"])
    rules, ok = [], True
    if gate.min is not None:
        rules.append(f">= {gate.min:g}")
        ok = ok and value >= gate.min
    if gate.max is not None:
        rules.append(f"<= {gate.max:g}")
        ok = ok and value <= gate.max
    return GateCheck(gate.metric, "challenger " + " and ".join(rules), f"{value:.4f}", ok)


def _relative(gate: RelativeGate, comparison: dict[str, Any], max_empty: float) -> GateCheck:
    m = _metric(comparison, gate.metric)
    ci_low, ci_high, diff = float(m["ci_low"]), float(m["ci_high"]), float(m["diff"])
    name, rule = f"{gate.metric} vs champion", f"CI low >= -{gate.max_drop:g}"
    empty = (comparison.get("outputs") or {}).get("empty_rate", {}).get("champion")
    if empty is None:
        value = "no champion empty rate in the comparison (written before lmfoundry counted them): re-run it"
        return GateCheck(name, rule, value, False)
    if empty > max_empty:
        value = (
            f"champion empty rate {empty:.2f} > {max_empty:g}: a comparison with a model that printed "
            "nothing proves nothing (evaluate the champion with a prompt it can answer)"
        )
        return GateCheck(name, rule, value, False)
    value = f"diff {diff:+.4f} [{ci_low:+.4f}, {ci_high:+.4f}]"
    return GateCheck(name, rule, value, ci_low >= -gate.max_drop)


def _limit(name: str, value: float | None, maximum: float, fmt: str) -> GateCheck:
    if value is None:
        return GateCheck(name, f"<= {maximum:g}", "unknown", False)
    return GateCheck(name, f"<= {maximum:g}", fmt.format(value), value <= maximum)


def _challenger(comparison: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = comparison
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise LmfError(f"the comparison has no {'.'.join(path)}; write it with `lmf eval compare`")
        node = node[key]
    value = node.get("challenger") if isinstance(node, dict) else None
    return None if value is None else float(value)
