"""``jasrbench check``: the regression gate.

Compares every metric of ``--actual`` (``metrics.json``, from ``collect``) with ``--expected`` and
fails, naming model, split, metric and both values, when a metric got worse beyond its tolerance
or a model, split or metric disappeared (or became unavailable). The absolute tolerances cover
the same code's run-to-run noise on another CPU (oneDNN kernels differ by instruction set); an
expectations file may widen them for its profile (``tolerances``: metric prefix → tolerance),
as the smoke profile does for its barely trained models' NME and verification accuracy.
Improvements beyond tolerance pass with a note; ``--update`` accepts the new values on purpose.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JasrbenchError
from ..files import atomic_write_json, read_json

# metric name prefix → (tolerance, higher_is_better)
TOLERANCES: dict[str, tuple[float, bool]] = {
    "psnr": (0.05, True),  # dB
    "ssim": (0.002, True),
    "nme": (0.1, False),  # ×100 (percent of the normalizer)
    "auc": (0.005, True),  # AUC@0.08 of the CED, in [0, 1]
    "failure_rate": (0.01, False),  # fraction
    "acc": (0.5, True),  # verification accuracy, percent
    "roc_auc": (0.005, True),
}


def tolerance_for(metric: str, overrides: dict[str, float] | None = None) -> tuple[float, bool] | None:
    """The rule of the longest matching prefix (``roc_auc`` before ``auc``…), or None if unchecked.

    ``overrides`` (prefix → tolerance, from the expectations file's ``tolerances``) widen or narrow
    a rule for one profile; the direction always comes from :data:`TOLERANCES`.
    """
    best = None
    rules = {p: ((overrides or {}).get(p, tol), higher) for p, (tol, higher) in TOLERANCES.items()}
    for prefix, rule in rules.items():
        if metric.startswith(prefix):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rule)
    return best[1] if best else None


@dataclass
class Finding:
    model: str
    split: str
    metric: str
    message: str
    regression: bool

    def __str__(self) -> str:
        return f"{self.model} / {self.split} / {self.metric}: {self.message}"


def _mean(value: Any) -> float | None:
    if isinstance(value, dict) and "mean" in value:
        return float(value["mean"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[Finding]:
    """All findings; those with ``regression=True`` fail the gate."""
    findings: list[Finding] = []
    overrides = {k: float(v) for k, v in (expected.get("tolerances") or {}).items()}
    unknown = set(overrides) - set(TOLERANCES)
    if unknown:
        raise JasrbenchError(f"expected metrics: unknown tolerance keys {sorted(unknown)}; known: {sorted(TOLERANCES)}")
    exp_models, act_models = expected.get("models", {}), actual.get("models", {})
    for model, splits in sorted(exp_models.items()):
        if model not in act_models:
            findings.append(Finding(model, "*", "*", "model disappeared from the results", True))
            continue
        for split, metrics in sorted(splits.items()):
            got = act_models[model].get(split)
            if got is None:
                findings.append(Finding(model, split, "*", "split disappeared from the results", True))
                continue
            if metrics.get("available", True) and not got.get("available", True):
                findings.append(Finding(model, split, "*", f"became unavailable ({got.get('reason')})", True))
                continue
            for metric, value in sorted(metrics.items()):
                want = _mean(value)
                rule = tolerance_for(metric, overrides)
                if want is None or rule is None:
                    continue
                have = _mean(got.get(metric))
                if have is None:
                    findings.append(Finding(model, split, metric, f"metric disappeared (expected {want:.4f})", True))
                    continue
                if not math.isfinite(have):
                    findings.append(Finding(model, split, metric, f"not finite ({have})", True))
                    continue
                tol, higher = rule
                delta = have - want
                worse = -delta if higher else delta
                if worse > tol:
                    findings.append(Finding(model, split, metric,
                                            f"regressed: expected {want:.4f}, got {have:.4f} "
                                            f"({'−' if higher else '+'}{worse:.4f}, tolerance {tol})", True))
                elif -worse > tol:
                    findings.append(Finding(model, split, metric,
                                            f"improved: expected {want:.4f}, got {have:.4f}; "
                                            "update the expectations if this is intended", False))
    return findings


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expected", required=True, help="expected metrics (e.g. results/smoke/expected.json)")
    parser.add_argument("--actual", required=True, help="metrics to check (e.g. results/smoke/metrics.json)")
    parser.add_argument("--update", action="store_true",
                        help="accept the actual metrics as the new expectations (copies --actual over --expected)")


def run(args: argparse.Namespace) -> int:
    if args.update:
        actual = read_json(args.actual)  # refuse to accept a missing or broken file
        if Path(args.expected).is_file():  # keep the profile's tolerance overrides
            tolerances = read_json(args.expected).get("tolerances")
            if tolerances:
                actual["tolerances"] = tolerances
        atomic_write_json(args.expected, actual)
        print(f"expectations updated: {args.expected} ← {args.actual}")
        return 0
    findings = compare(read_json(args.expected), read_json(args.actual))
    for f in findings:
        print(("REGRESSION " if f.regression else "note       ") + str(f))
    failures = [f for f in findings if f.regression]
    if failures:
        raise JasrbenchError(f"{len(failures)} regression(s) against {args.expected}: "
                             + "; ".join(str(f) for f in failures[:5]) + (" …" if len(failures) > 5 else ""))
    print(f"check passed: no regression against {args.expected}")
    return 0
