"""One profile's results as one long-format frame: a row per model, split and metric.

Read from ``results/<profile>``: ``metrics.json`` (from ``collect``) and the per-image
values under ``eval/``. Besides each value and its interval, a row carries what the
tables judge once, here: the paired bootstrap test of JASRNet against the model on
the same faces, and whether the value is no better than no learning.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import read_json
from ..metrics.statistics import paired_test
from . import paper

PER_IMAGE_METRICS = ("psnr", "ssim", "nme")  # metrics with per-image values (paired tests possible)
SIGNIFICANCE_RESAMPLES = 2000
HEALTH_LABEL = "did not learn in this profile"
# metric → (the no-learning reference model, True if a learned model must be above it)
HEALTH_REFERENCES = {"psnr": ("bicubic", True), "nme": (paper.FLOOR_MODEL, False)}
METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "nme": "NME", "acc": "ACC", "params": "Params",
                "psnr_border8": "PSNR", "ssim_border8": "SSIM"}

# The frame's columns. Every evaluation has a "params" row (its parameter count in ``mean``), so an
# unavailable split still has a row saying why; vs…significant: the paired test, flag: the health check.
COLUMNS = ("model", "run", "trained_on", "dataset", "split", "available", "reason", "metric", "mean", "ci_low",
           "ci_high", "std", "n", "vs", "diff", "diff_ci_low", "diff_ci_high", "p_bootstrap", "p_wilcoxon",
           "significant", "flag")


class Results:
    """``results/<profile>``: ``metrics.json``, the evaluation folders under ``eval/`` and :attr:`frame`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.metrics = read_json(self.root / "metrics.json")
        self.profile: str = str(self.metrics.get("profile", self.root.name))
        self.models: dict[str, dict[str, Any]] = self.metrics.get("models", {})
        self.stand_in: dict[str, str] = self.metrics.get("stand_in", {}) or {}
        self.protocols: set[str] = set()  # degradation protocols the evaluations were made under
        self._eval_dirs = self._scan_eval()
        self._per_image: dict[Path, pd.DataFrame] = {}

    def _scan_eval(self) -> dict[tuple[str, str], Path]:
        """(model, split) → its evaluation folder (where ``per_image.csv`` lives)."""
        found: dict[tuple[str, str], Path] = {}
        for path in sorted((self.root / "eval").glob("*/*/summary.json")):
            summary = read_json(path)
            key = (summary.get("model"), summary.get("split"))
            entry = self.entry(*key)
            if entry is None:
                continue  # an evaluation collect did not merge (not in the profile's DAG)
            if entry.get("run") is not None:  # eval/<run>/<split>/: the run the table shows (collect's choice)
                if path.parent.parent.name != entry["run"]:
                    continue
            elif key in found and summary.get("trained_on") != entry.get("trained_on"):
                continue  # the same model trained on another dataset: metrics.json holds the other one
            found[key] = path.parent
            if summary.get("protocol"):
                self.protocols.add(str(summary["protocol"]))
        return found

    @cached_property
    def frame(self) -> pd.DataFrame:
        return build_frame(self)

    def has_model(self, model: str) -> bool:
        return model in self.models

    def entry(self, model: str, split: str) -> dict[str, Any] | None:
        return (self.models.get(model) or {}).get(split)

    def splits(self) -> set[str]:
        return {split for entries in self.models.values() for split in entries}

    def eval_dir(self, model: str, split: str) -> Path | None:
        return self._eval_dirs.get((model, split))

    def per_image(self, model: str, split: str, metric: str) -> pd.Series | None:
        """Per-image values of ``metric`` indexed by face name, or None when not recorded."""
        folder = self.eval_dir(model, split)
        if folder is None or not (folder / "per_image.csv").is_file():
            return None
        if folder not in self._per_image:
            self._per_image[folder] = pd.read_csv(folder / "per_image.csv")
        frame = self._per_image[folder]
        if metric not in frame.columns or "name" not in frame.columns:
            return None
        return frame.set_index("name")[metric]

    def faces(self, split: str) -> int | None:
        """Number of test faces behind the split's per-image values (the largest over models)."""
        return self._count(split, PER_IMAGE_METRICS)

    def pairs(self, split: str) -> int | None:
        """Number of verification pairs behind the split's accuracy."""
        return self._count(split, ("acc",))

    def _count(self, split: str, metrics: tuple[str, ...]) -> int | None:
        f = self.frame
        counts = f.loc[(f["split"] == split) & f["metric"].isin(metrics), "n"].dropna()
        return int(counts.max()) if len(counts) else None

    @cached_property
    def _evaluations(self) -> dict[tuple[str, str], pd.DataFrame]:
        return {key: rows.set_index("metric") for key, rows in self.frame.groupby(["model", "split"], sort=False)}

    def evaluation(self, model: str, split: str) -> pd.DataFrame | None:
        """The frame's rows of one model on one split, indexed by metric; None where it was not evaluated."""
        return self._evaluations.get((model, split))

    def status(self, model: str, split: str) -> tuple[bool, str | None] | None:
        """(available, reason) of one evaluation; None where the model was not evaluated on the split."""
        rows = self.evaluation(model, split)
        if rows is None:
            return None
        reason = rows["reason"].iloc[0]
        return bool(rows["available"].iloc[0]), reason if isinstance(reason, str) else None

    def value(self, model: str, split: str, metric: str) -> pd.Series | None:
        """The frame's row of one value, or None."""
        rows = self.evaluation(model, split)
        return rows.loc[metric] if rows is not None and metric in rows.index else None


def build_frame(results: Results, reference: str = paper.REFERENCE_MODEL,
                resamples: int = SIGNIFICANCE_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """The long-format frame of :data:`COLUMNS`, each paired test computed here and only here."""
    rows: list[dict[str, Any]] = []
    for model, entries in results.models.items():
        for split, entry in entries.items():
            base = {"model": model, "run": entry.get("run"), "trained_on": entry.get("trained_on"),
                    "dataset": split.partition("/")[0], "split": split,
                    "available": bool(entry.get("available", True)), "reason": entry.get("reason")}
            rows.append({**base, "metric": "params", "mean": entry.get("params")})
            for metric, value in entry.items():
                if not (isinstance(value, dict) and "mean" in value):
                    continue
                row = {**base, "metric": metric, "mean": float(value["mean"]), "ci_low": value.get("ci_low"),
                       "ci_high": value.get("ci_high"), "std": value.get("std"), "n": value.get("n")}
                if metric in PER_IMAGE_METRICS and model != reference and base["available"]:
                    row.update(_paired(results, reference, model, split, metric, resamples, seed))
                rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    numbers = ["mean", "ci_low", "ci_high", "std", "n", "diff", "diff_ci_low", "diff_ci_high", "p_bootstrap",
               "p_wilcoxon"]
    frame[numbers] = frame[numbers].astype(float)
    frame["available"] = frame["available"].astype(bool)
    flags = _health(frame)
    frame["flag"] = pd.Series([flags.get(key) for key in zip(frame["model"], frame["split"], frame["metric"])],
                              index=frame.index, dtype=object)
    return frame


def _paired(results: Results, reference: str, model: str, split: str, metric: str, resamples: int,
            seed: int) -> dict[str, Any]:
    """The frame's test columns: JASRNet's values minus the model's on the faces both were evaluated on."""
    ref = results.per_image(reference, split, metric)
    other = results.per_image(model, split, metric)
    if ref is None or other is None:
        return {}
    joined = pd.concat([ref.rename("ref"), other.rename("other")], axis=1, join="inner").dropna()
    if len(joined) < 2:
        return {}
    test = paired_test(joined["ref"].to_numpy(), joined["other"].to_numpy(), seed=seed, resamples=resamples)
    return {"vs": reference, "diff": test["mean_diff"], "diff_ci_low": test["ci_low"],
            "diff_ci_high": test["ci_high"], "p_bootstrap": test["p_bootstrap"], "p_wilcoxon": test["p_wilcoxon"],
            "significant": test["significant"]}


# --- training health --------------------------------------------------------------------------------
def _health(frame: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(model, split, metric) → why the value is no better than no learning.

    A super-resolution model whose mean PSNR is below bicubic's on the same split, or a landmark model
    whose mean NME is not below the mean-shape floor's (the mean training shape, whatever the face),
    learned nothing useful in this profile's schedule. Without the reference on the split, no flag.
    """
    means = {(r.model, r.split, r.metric): r.mean for r in frame.itertuples() if r.metric in HEALTH_REFERENCES}
    flags: dict[tuple[str, str, str], str] = {}
    for r in frame[frame["available"] & frame["metric"].isin(list(HEALTH_REFERENCES))].itertuples():
        reference, higher = HEALTH_REFERENCES[r.metric]
        ref = means.get((reference, r.split, r.metric))
        if r.model == reference or ref is None:
            continue
        if (r.mean < ref) if higher else (r.mean >= ref):
            unit = " dB" if r.metric == "psnr" else ""
            name = METRIC_NAMES[r.metric]
            why = (f"its {name} is below bicubic's ({ref:.2f}{unit}) on {r.split}" if higher
                   else f"its {name} is not below the no-learning mean-shape floor ({ref:.2f}) on {r.split}")
            flags[(r.model, r.split, r.metric)] = f"{HEALTH_LABEL}: {why}"
    return flags


def training_health(results: Results) -> dict[tuple[str, str, str], str]:
    """(model, split, metric) → why the value is flagged "did not learn" (the frame's ``flag``)."""
    f = results.frame
    return {(r.model, r.split, r.metric): r.flag for r in f[f["flag"].notna()].itertuples()}


def health_report(results: Results) -> list[dict[str, Any]]:
    """The flagged values as records (model, split, metric, value, reference, why), sorted."""
    out = []
    for (model, split, metric), why in sorted(training_health(results).items()):
        reference = HEALTH_REFERENCES[metric][0]
        out.append({"model": model, "split": split, "metric": metric,
                    "value": float(results.value(model, split, metric)["mean"]), "reference_model": reference,
                    "reference": float(results.value(reference, split, metric)["mean"]), "why": why})
    return out


__all__ = ["COLUMNS", "HEALTH_LABEL", "HEALTH_REFERENCES", "PER_IMAGE_METRICS", "Results", "build_frame",
           "health_report", "training_health"]
