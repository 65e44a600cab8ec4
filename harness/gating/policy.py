"""The regression gate's policy: per suite, which metrics gate (and which only report), the allowed drop,
the significance level and the minimum number of paired samples.

A policy file (YAML) overrides the shipped defaults key by key; docs/gate.example.yaml is a commented
copy of `DEFAULT_POLICY`. Drops are in absolute percentage points (1.0 = one point of accuracy).

Why these defaults (alpha 0.05, allowed drop 1 point, at least 20 paired samples):
- alpha 0.05, one-sided, Holm-corrected across the gating metrics of one gate: at most a 5% chance that
  a gate with no real regression beyond the allowed drop says FAIL.
- allowed drop 1 point: a real 5-point drop on 500 samples is caught in >= 80% of gates at the
  discordance typical of consecutive training stages (about 1 sample in 9 changes its verdict; see
  tests/unit/test_gate_sim.py), while noise within a point is not called a regression. A margin of 0
  would make PASS impossible for any candidate that changes at all (its interval always reaches below 0).
- 20 paired samples: below that even a total collapse is rarely significant; the gate refuses to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import UsageError

PRIMARY = "primary"  # in `gate`/`report` lists: the suite's primary metric, whatever its name

DEFAULT_POLICY: dict[str, Any] = {
    "alpha": 0.05,
    "ci_level": 0.95,
    "min_samples": 20,
    "resamples": 10000,
    "seed": 0,
    "margin_test": "plugin",
    "defaults": {"allowed_drop": 1.0, "gate": [PRIMARY], "report": []},
    # The suites gated by default: each gates the primary metric its suite declares (Suite.primary_metric)
    # and reports its other headline metrics.
    "suites": {
        "gsm8k": {"report": ["exact_match_strict"]},
        "ifeval": {"report": ["prompt_level_strict_acc", "inst_level_loose_acc", "inst_level_strict_acc"]},
        "mbpp": {},
        "mbpp-sanitized": {},
        "safety": {},
        "alice": {},
        "alice-synth": {},
    },
}

_TOP_KEYS = {"alpha", "ci_level", "min_samples", "resamples", "seed", "margin_test", "defaults", "suites"}
_SUITE_KEYS = {"allowed_drop", "alpha", "min_samples", "gate", "report"}


@dataclass(frozen=True)
class SuitePolicy:
    allowed_drop: float  # percentage points
    alpha: float
    min_samples: int
    gate: tuple[str, ...]
    report: tuple[str, ...] = ()

    @property
    def margin(self) -> float:
        """The allowed drop as a fraction (scores are 0..1)."""
        return self.allowed_drop / 100.0


@dataclass(frozen=True)
class GatePolicy:
    alpha: float
    ci_level: float
    min_samples: int
    resamples: int
    seed: int
    margin_test: str  # plugin | berger-boos (harness/gating/verdicts.py)
    defaults: SuitePolicy
    suites: Mapping[str, SuitePolicy] = field(default_factory=dict)
    source: str = "built-in defaults"

    def for_suite(self, suite: str) -> SuitePolicy:
        return self.suites.get(suite, self.defaults)

    def to_record(self) -> dict[str, Any]:
        def one(p: SuitePolicy) -> dict[str, Any]:
            return {
                "allowed_drop": p.allowed_drop,
                "alpha": p.alpha,
                "min_samples": p.min_samples,
                "gate": list(p.gate),
                "report": list(p.report),
            }

        return {
            "source": self.source,
            "alpha": self.alpha,
            "ci_level": self.ci_level,
            "min_samples": self.min_samples,
            "resamples": self.resamples,
            "seed": self.seed,
            "margin_test": self.margin_test,
            "defaults": one(self.defaults),
            "suites": {name: one(p) for name, p in self.suites.items()},
        }


def _bad(where: str, problem: str) -> UsageError:
    return UsageError(f"Gate policy {where}: {problem}.", "See docs/gate.example.yaml for every key.")


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise _bad(where, f"expected {'a whole number' if integer else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise _bad(where, f"{value} is outside [{low:g}, {high:g}]")
    return float(value)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(where, f"expected a list of metric names, got {value!r}")
    return tuple(value)


def _suite_policy(raw: Any, base: SuitePolicy, where: str) -> SuitePolicy:
    if not isinstance(raw, dict):
        raise _bad(where, f"expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _SUITE_KEYS
    if unknown:
        raise _bad(where, f"unknown key(s) {sorted(unknown, key=str)} (known: {sorted(_SUITE_KEYS)})")
    policy = base
    if "allowed_drop" in raw:
        policy = replace(policy, allowed_drop=_number(raw["allowed_drop"], f"{where}.allowed_drop", 0, 100))
    if "alpha" in raw:
        policy = replace(policy, alpha=_number(raw["alpha"], f"{where}.alpha", 1e-6, 0.5))
    if "min_samples" in raw:
        policy = replace(
            policy, min_samples=int(_number(raw["min_samples"], f"{where}.min_samples", 1, 1e9, True))
        )
    if "gate" in raw:
        policy = replace(policy, gate=_names(raw["gate"], f"{where}.gate"))
    if "report" in raw:
        policy = replace(policy, report=_names(raw["report"], f"{where}.report"))
    return policy


def build_policy(raw: Mapping[str, Any], source: str) -> GatePolicy:
    """A policy from a mapping layered over DEFAULT_POLICY (a suite listed in the file replaces the default
    entry of that suite; keys it leaves out come from the file's `defaults`, then the shipped ones)."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise _bad(source, f"unknown key(s) {sorted(unknown, key=str)} (known: {sorted(_TOP_KEYS)})")
    merged = {**DEFAULT_POLICY, **raw}
    alpha = _number(merged["alpha"], "alpha", 1e-6, 0.5)
    min_samples = int(_number(merged["min_samples"], "min_samples", 1, 1e9, True))
    root = SuitePolicy(allowed_drop=0.0, alpha=alpha, min_samples=min_samples, gate=(PRIMARY,))
    defaults = _suite_policy(DEFAULT_POLICY["defaults"], root, "defaults")
    defaults = _suite_policy(raw.get("defaults", {}), defaults, "defaults")
    suites_raw = raw.get("suites", {})
    if not isinstance(suites_raw, dict):
        raise _bad("suites", "expected a mapping of suite name -> settings")
    suites = {
        name: _suite_policy(entry, defaults, f"suites.{name}")
        for name, entry in {**DEFAULT_POLICY["suites"], **suites_raw}.items()
    }
    margin_test = merged["margin_test"]
    if margin_test not in ("plugin", "berger-boos"):
        raise _bad("margin_test", f"expected plugin or berger-boos, got {margin_test!r}")
    return GatePolicy(
        alpha=alpha,
        ci_level=_number(merged["ci_level"], "ci_level", 0.5, 0.999),
        min_samples=min_samples,
        resamples=int(_number(merged["resamples"], "resamples", 100, 1e7, True)),
        seed=int(_number(merged["seed"], "seed", -(2**63), 2**63, True)),
        margin_test=str(margin_test),
        defaults=defaults,
        suites=suites,
        source=source,
    )


def load_policy(path: str | None) -> GatePolicy:
    if path is None:
        return build_policy({}, "built-in defaults")
    from harness.readers import read_yaml

    file = Path(path).expanduser()
    raw = read_yaml(file, "gate policy", fix="Fix the file; docs/gate.example.yaml shows every key.")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad(str(file), "the top level must be a mapping")
    return build_policy(raw, str(file))
