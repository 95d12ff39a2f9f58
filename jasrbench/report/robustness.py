"""The robustness track in the report (issue 26): every model under each camera degradation of its test LR.

Reads ``metrics.json``'s ``robustness`` section (written by ``collect`` from the ``robustness@…`` stages)
beside the clean values, and the per-image values for the paired test against JASRNet under the same
degradation. Writes ``tables/robustness.{csv,md,tex}`` (long format in the CSV; one Markdown/LaTeX table
per metric: models × degradations, each cell the mean and its drop from the clean value) and
``figures/robustness.{png,pdf}`` (PSNR and NME against each sweep's level, the clean value at level 0,
one line per model; models trained on a degradation dashed).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import degradations
from ..files import atomic_path, read_json
from ..metrics.statistics import paired_test
from .paper import REFERENCE_MODEL, model_labels

METRICS = ("psnr", "ssim", "nme")
HIGHER = {"psnr": True, "ssim": True, "nme": False}
DECIMALS = {"psnr": 2, "ssim": 3, "nme": 2}
NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "nme": "NME (×100)"}
CLEAN_LEVEL = {"blur": 0.0, "noise": 0.0, "jpeg": 100.0}  # where the clean value sits on each sweep's axis
SOURCES = ("Values: blur on the HR σ ∈ {1, 2, 3, 4} px (LR σ 0.125–0.5), noise on the LR σ ∈ {2, 5, 10, 20}/255, JPEG "
           "q ∈ {90, 70, 50, 30}; `mixed` draws blur σ ~ U[0, 4] px, noise σ ~ U[0, 15]/255, JPEG q ~ U{40…95}, each "
           "applied with probability 0.7. Sources: GFPGAN's degradation (σ_blur ∈ [0.1, 10] at 512 px, noise ∈ "
           "[0, 20]/255, JPEG ∈ [60, 100]) and Real-ESRGAN's (blur σ ∈ [0.2, 3] at 256 px, noise ∈ [1, 30]/255, JPEG "
           "∈ [30, 95]), blur scaled to a 128-pixel face.")


@functools.lru_cache(maxsize=64)  # the reference's file is read once, not once per model and metric
def _per_image(root: Path, kind: str, run: str, split: str, degradation: str | None) -> pd.DataFrame | None:
    folder = f"{split.replace('/', '_')}"
    path = (root / "eval" / run / folder if kind == "clean" else root / "eval" / run / "robustness" / degradation / folder)
    path = path / "per_image.csv"
    return pd.read_csv(path) if path.is_file() else None


def frame(results_root: str | Path, *, seed: int = 0, resamples: int = 2000) -> pd.DataFrame:
    """One row per (model, degradation, split, metric): mean, interval, clean mean, drop, paired test vs JASRNet."""
    root = Path(results_root)
    metrics = read_json(root / "metrics.json")
    robust, clean_runs = metrics.get("robustness") or {}, metrics.get("runs") or {}
    reference_run = next((r for r, v in robust.items() if v["model"] == REFERENCE_MODEL), None)
    rows = []
    for run, entry in sorted(robust.items()):
        for degradation, splits in entry["degradations"].items():
            for split, values in splits.items():
                clean = (clean_runs.get(run) or {}).get("splits", {}).get(split, {})
                for metric in METRICS:
                    value = values.get(metric)
                    if not isinstance(value, dict):
                        continue
                    row = {"model": entry["model"], "run": run, "trained_degradation": values.get("trained_degradation"),
                           "degradation": degradation, "split": split, "metric": metric, "mean": value["mean"],
                           "ci_low": value.get("ci_low"), "ci_high": value.get("ci_high")}
                    base = clean.get(metric)
                    row["clean"] = base["mean"] if isinstance(base, dict) else np.nan
                    row["drop"] = (row["clean"] - row["mean"]) if HIGHER[metric] else (row["mean"] - row["clean"])
                    row.update(_versus_reference(root, reference_run, run, split, degradation, metric, seed, resamples))
                    rows.append(row)
    return pd.DataFrame(rows)


def _versus_reference(root: Path, reference_run: str | None, run: str, split: str, degradation: str, metric: str,
                      seed: int, resamples: int) -> dict[str, Any]:
    """JASRNet − model on the same faces under the same degradation (the report's paired test)."""
    if reference_run is None or reference_run == run:
        return {}
    ref, other = (_per_image(root, "robust", r, split, degradation) for r in (reference_run, run))
    test = _paired(ref, other, metric, seed, resamples)
    if not test:
        return {}
    return {"vs_jasrnet": test["mean_diff"], "vs_jasrnet_significant": test["significant"],
            "vs_jasrnet_p": test["p_bootstrap"]}


def _paired(first: pd.DataFrame | None, second: pd.DataFrame | None, metric: str, seed: int,
            resamples: int) -> dict[str, Any]:
    """Paired test of ``first`` − ``second`` over the faces both scored (matched by name); {} if none."""
    if first is None or second is None or metric not in first or metric not in second:
        return {}
    joined = first[["name", metric]].merge(second[["name", metric]], on="name", suffixes=("_1", "_2")).dropna()
    if joined.empty:
        return {}
    return paired_test(joined[f"{metric}_1"].to_numpy(), joined[f"{metric}_2"].to_numpy(), seed=seed,
                       resamples=resamples)


def _drop_test(before: pd.DataFrame | None, after: pd.DataFrame | None, metric: str, seed: int,
               resamples: int) -> dict[str, Any]:
    """Paired test of ``before`` − ``after`` per face, oriented so that a positive value is a loss of quality."""
    return _paired(before, after, metric, seed, resamples) if HIGHER[metric] else \
        _paired(after, before, metric, seed, resamples)


def largest_drops(f: pd.DataFrame, results_root: str | Path, split: str, *, n: int = 3, seed: int = 0,
                  resamples: int = 2000) -> pd.DataFrame:
    """The ``n`` largest drops per metric on ``split``, and whether training on a degradation recovers them.

    Two scopes: ``all`` ranks every model trained on clean LR; ``trained twin`` ranks those of each model the
    profile also trains on a degradation (``edsr`` and ``edsr_mixed``). Each drop carries the paired interval
    of clean − degraded over the same faces (a positive value is a loss, NME included). Where a twin exists,
    ``twin`` is its value under the same degradation and ``recovered`` the paired gain of the twin over the
    clean-trained model on the same degraded faces, with ``recovered_share`` = recovered / drop.
    """
    root = Path(results_root)
    sub = f[(f["split"] == split) & f["metric"].isin(METRICS)]
    trained = sub["trained_degradation"].apply(lambda t: isinstance(t, str) and bool(t))
    clean_trained, twins = sub[~trained], sub[trained]
    twin_run = {}
    for _, r in twins.drop_duplicates("run").iterrows():
        twin_run[r["model"].removesuffix(f"_{r['trained_degradation']}")] = (r["run"], r["model"])
    rows, tested = [], {}
    for scope, pool in (("all", clean_trained), ("trained twin", clean_trained[clean_trained["model"].isin(twin_run)])):
        for metric in METRICS:
            ranked = pool[pool["metric"] == metric].sort_values("drop", ascending=False)
            groups = [ranked] if scope == "all" else [g for _, g in ranked.groupby("model")]
            for group in groups:
                for _, r in group.head(n).iterrows():
                    key = (r["run"], r["degradation"], metric)  # a twin's model was ranked in `all` too
                    if key not in tested:
                        tested[key] = _drop_test(_per_image(root, "clean", r["run"], split, None),
                                                 _per_image(root, "robust", r["run"], split, r["degradation"]),
                                                 metric, seed, resamples)
                    drop = tested[key]
                    row = {"scope": scope, "metric": metric, "model": label(r), "run": r["run"],
                           "degradation": r["degradation"], "clean": r["clean"], "degraded": r["mean"],
                           "drop": drop.get("mean_diff", r["drop"]), "drop_low": drop.get("ci_low"),
                           "drop_high": drop.get("ci_high")}
                    twin = twin_run.get(r["model"])
                    hit = twins[(twins["run"] == twin[0]) & (twins["metric"] == metric)
                                & (twins["degradation"] == r["degradation"])] if twin else twins.iloc[0:0]
                    if len(hit):
                        gain = _drop_test(_per_image(root, "robust", twin[0], split, r["degradation"]),
                                          _per_image(root, "robust", r["run"], split, r["degradation"]), metric,
                                          seed, resamples)
                        row.update({"twin": label(hit.iloc[0]), "twin_degraded": float(hit["mean"].iloc[0]),
                                    "recovered": -gain.get("mean_diff", np.nan), "recovered_low": -gain["ci_high"]
                                    if gain else np.nan, "recovered_high": -gain["ci_low"] if gain else np.nan,
                                    # a share of a drop only where there is one (its interval above 0)
                                    "recovered_share": -gain.get("mean_diff", np.nan) / row["drop"]
                                    if (row["drop_low"] or 0) > 0 else np.nan})
                    rows.append(row)
    return pd.DataFrame(rows)


def drops_markdown(d: pd.DataFrame) -> list[str]:
    """README lines: the largest drops, each with its interval and, where a twin exists, what it recovers."""
    lines = []
    for scope, title in (("all", "Largest drops (every model trained on clean LR)"),
                         ("trained twin", "Does training on the degradations recover them?")):
        part = d[d["scope"] == scope]
        if part.empty:
            continue
        table = []
        for _, r in part.iterrows():
            k = DECIMALS[r["metric"]]
            interval = (f" [{r['drop_low']:.{k}f}, {r['drop_high']:.{k}f}]" if pd.notna(r.get("drop_low")) else "")
            cells = {"metric": NAMES[r["metric"]], "model": r["model"], "degradation": r["degradation"],
                     "clean → degraded": f"{r['clean']:.{k}f} → {r['degraded']:.{k}f}",
                     "drop [95% CI]": f"{r['drop']:.{k}f}{interval}"}
            if isinstance(r.get("twin"), str):
                cells["trained on it"] = (f"{r['twin']}: {r['twin_degraded']:.{k}f}, recovers {r['recovered']:+.{k}f} "
                                          f"[{r['recovered_low']:+.{k}f}, {r['recovered_high']:+.{k}f}]"
                                          + (f" ({100 * r['recovered_share']:.0f}% of the drop)"
                                             if pd.notna(r["recovered_share"]) else " (no significant drop)"))
            table.append(cells)
        lines += [f"**{title}** (a drop is a loss of quality, NME included; intervals: paired bootstrap over the "
                  "same faces)", "", pd.DataFrame(table).fillna("–").to_markdown(index=False), ""]
    return lines


def label(row: pd.Series | dict) -> str:
    """The paper's label of the model (of its architecture for ``edsr_mixed``), and what it trained on if not clean."""
    trained = row.get("trained_degradation")
    trained = trained if isinstance(trained, str) and trained else None
    labels = model_labels()
    model = row["model"]
    base = labels.get(model) or (labels.get(model.removesuffix(f"_{trained}")) if trained else None) or model
    return f"{base} (trained on {trained})" if trained else base


def _order(degradations_seen: set[str]) -> list[str]:
    order = [name for kind in degradations.SWEEPS for name in _sweep_names(kind)] + ["mixed"]
    return [d for d in order if d in degradations_seen] + sorted(degradations_seen - set(order))


def _sweep_names(kind: str) -> list[str]:
    return [name for name, _level in sweep_levels(kind)]


def sweep_levels(kind: str) -> list[tuple[str, float]]:
    """(protocol name, level) of one sweep, in increasing severity (JPEG: decreasing quality)."""
    return [(p.name, float((p.blur or p.noise or p.jpeg)[0])) for p in degradations.SWEEPS[kind]]


def tables(f: pd.DataFrame, split: str) -> dict[str, pd.DataFrame]:
    """METRIC → models × degradations (cells ``mean (change from clean)``; the clean value first)."""
    out = {}
    sub = f[f["split"] == split]
    for metric in METRICS:
        m = sub[sub["metric"] == metric]
        if m.empty:
            continue
        d = DECIMALS[metric]
        columns = ["clean", *_order(set(m["degradation"]))]
        rows = {}
        for _, r in m.iterrows():
            name = label(r)
            cells = rows.setdefault(name, {"clean": f"{r['clean']:.{d}f}" if pd.notna(r["clean"]) else "–"})
            mark = "" if pd.isna(r.get("vs_jasrnet_significant")) or not r.get("vs_jasrnet_significant") else "*"
            change = f" ({r['mean'] - r['clean']:+.{d}f})" if pd.notna(r["clean"]) else ""
            cells[r["degradation"]] = f"{r['mean']:.{d}f}{change}{mark}"
        out[metric] = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).fillna("–")
    return out


def curves(f: pd.DataFrame, split: str, stem: Path, palette: dict[str, str]) -> list[Path]:
    """PSNR and NME against each sweep's level (level 0: the clean value), one line per model."""
    from . import figures

    plt = figures.plt
    sub = f[f["split"] == split]
    kinds = [k for k in degradations.SWEEPS if set(_sweep_names(k)) & set(sub["degradation"])]
    metrics = [m for m in ("psnr", "nme") if (sub["metric"] == m).any()]
    if not kinds or not metrics:
        return []
    with plt.rc_context(figures._RC):
        fig, axes = plt.subplots(len(metrics), len(kinds), figsize=(figures.FIG_WIDTH, 1.9 * len(metrics) + 0.6),
                                 squeeze=False)
        handles = {}
        for i, metric in enumerate(metrics):
            for j, kind in enumerate(kinds):
                ax = axes[i, j]
                levels = sweep_levels(kind)
                for run, group in sub[sub["metric"] == metric].groupby("run"):
                    first = group.iloc[0]
                    trained = isinstance(first["trained_degradation"], str) and bool(first["trained_degradation"])
                    xs, ys = [CLEAN_LEVEL[kind]], [first["clean"]]  # no degradation: σ 0, JPEG quality 100
                    for name, level in levels:
                        hit = group[group["degradation"] == name]
                        if len(hit):
                            xs.append(float(level))
                            ys.append(float(hit["mean"].iloc[0]))
                    if len(xs) < 2:
                        continue
                    line, = ax.plot(xs, ys, marker="o", markersize=2.5, linewidth=1,
                                    color=palette.get(first["model"], "#444444"),
                                    linestyle="--" if trained else "-")
                    handles.setdefault(label(first), line)
                ax.set_title(f"{kind}" if i == 0 else "")
                ax.set_xlabel({"blur": "HR blur σ (px)", "noise": "noise σ (/255)", "jpeg": "JPEG quality"}[kind]
                              if i == len(metrics) - 1 else "")
                if kind == "jpeg":
                    ax.invert_xaxis()
                if j == 0:
                    ax.set_ylabel(NAMES[metric])
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, max(1, len(handles))),
                   frameon=False)
        fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) // 4), 1, 1))
        return figures.save_all(fig, stem)


def write(results_root: Path, out: Path, palette: dict[str, str] | None) -> list[str]:
    """The robustness tables and figure (``palette`` None: no figure); returns the README section (empty without
    robustness results)."""
    metrics = read_json(results_root / "metrics.json")
    if not metrics.get("robustness"):
        return []
    f = frame(results_root)
    if f.empty:  # every robustness split unavailable here (e.g. a 300W subset without the common test faces)
        return ["## Robustness: camera degradations of the test LR", "",
                "No robustness value: the splits of the profile's `robustness` section are unavailable here.", ""]
    (out / "tables").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "tables" / "robustness.csv", suffix=".csv") as tmp:
        f.to_csv(tmp, index=False, float_format="%.6g")
    lines = ["## Robustness: camera degradations of the test LR", "",
             "Each model's evaluation again with the test LR made from the same prepared HR by a camera degradation "
             "(`jasrbench/data/degradations.py`: blur on the HR, noise on the LR, JPEG on the 8-bit LR, and `mixed`, "
             "each drawn per face from its name), no retraining; a model trained on a degradation says so. Cells: "
             "mean (change from the clean value); * the paired test against JASRNet under the same degradation "
             "is significant (95%). All values with intervals and tests: [`tables/robustness.csv`](tables/robustness.csv).",
             "", SOURCES, ""]
    tex = []
    for split in sorted(set(f["split"])):
        for metric, table in tables(f, split).items():
            lines += [f"**{NAMES[metric]} on `{split}`**", "", table.to_markdown(), ""]
            tex.append(table.style.to_latex(caption=f"{NAMES[metric]} on {split} under camera degradations",
                                            hrules=True).replace("%", r"\%"))
    for fmt, text in (("md", "\n".join(lines[4:]) + "\n"), ("tex", "\n\n".join(tex) + "\n")):
        with atomic_path(out / "tables" / f"robustness.{fmt}", suffix=f".{fmt}") as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    split = "300w/common" if (f["split"] == "300w/common").any() else sorted(set(f["split"]))[0]
    drops = largest_drops(f, results_root, split)
    if not drops.empty:
        with atomic_path(out / "tables" / "robustness_drops.csv", suffix=".csv") as tmp:
            drops.to_csv(tmp, index=False, float_format="%.6g")
        lines += [f"### The largest drops on `{split}`", "", *drops_markdown(drops),
                  "All values: [`tables/robustness_drops.csv`](tables/robustness_drops.csv).", ""]
    if palette is not None and curves(f, split, out / "figures" / "robustness", palette):
        lines += [f"![PSNR and NME against each sweep's level on {split}](figures/robustness.png)", ""]
    return lines
