"""``results/<profile>/README.md``: the generated summary of one profile's results.

Profile, data (and which set stands in for which), git commit, the tables in
Markdown, the figures, how to regenerate it and how to compare the runs in
MLflow. Written atomically by ``jasrbench report``; never edited by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text
from ..tracking import git_commit
from . import tables
from .render import to_markdown
from .results import HEALTH_LABEL, HEALTH_REFERENCES, health_report

if TYPE_CHECKING:
    from .build import Report

FIGURE_TITLES = {
    "comparison": "Visual comparison (the paper's Figure 4, landmarks as in its Figure 1b)",
    "ced": "Cumulative error distribution",
    "ced_ablations": "Cumulative error distribution: ablations and variants",
    "training_curves": "Training curves",
    "training_curves_ablations": "Training curves: ablations and variants",
}


def _data_section(report: Report, params: dict[str, Any] | None) -> list[str]:
    results = report.results
    lines = ["## Data", ""]
    datasets = (params or {}).get("data", {}).get("datasets", {})
    if datasets:
        lines += ["| dataset | raw data | note |", "|---|---|---|"]
        for name, entry in datasets.items():
            stand_in = (entry or {}).get("stand_in") or results.stand_in.get(name)
            note = f"**stand-in**: {stand_in}" if stand_in else ""
            lines.append(f"| {tables.DATASET_NAMES.get(name, name)} | `{(entry or {}).get('raw', '?')}` | {note} |")
        lines.append("")
    lines += ["| test split | evaluated | size | status |", "|---|---|---|---|"]
    for split in sorted(results.splits()):
        entries = {m: e for m, entries in results.models.items() if (e := entries.get(split)) is not None}
        available = [m for m, e in entries.items() if e.get("available", True)]
        reasons = sorted({e.get("reason", "unavailable") for e in entries.values() if not e.get("available", True)})
        counts = [f"{n} {unit}" for n, unit in ((results.faces(split), "faces"), (results.pairs(split), "pairs")) if n]
        size = ", ".join(counts) or "—"
        status = "available" if available else "unavailable: " + "; ".join(reasons)
        dataset = split.partition("/")[0]
        if results.stand_in.get(dataset):
            status += f" (stand-in: {results.stand_in[dataset]})"
        lines.append(f"| `{split}` | {len(entries)} model{'s' if len(entries) != 1 else ''} | {size} | {status} |")
    return lines + [""]


def measured_causes(results_root: Path, models: list[str]) -> list[str]:
    """Why a flagged model did not learn, where it was measured: its code run beside its authors'
    (``results/fidelity/<model>.json``, ``benchmarks/fidelity_<model>.py``) and its validation curve here."""
    from ..files import read_json

    lines = []
    for model in models:
        path = results_root.parent / "fidelity" / f"{model}.json"
        if not path.is_file():
            continue
        fid = read_json(path)
        one, training = fid.get("one_batch", {}), fid.get("training")
        if not training:
            continue
        equal = (all(one.get(k, {}).get("within_goal") for k in ("forward", "gradients"))
                 and training["loss_max_rel_over_steps"] <= fid.get("goal_rel", 1e-5) * 100)
        where = f"[`fidelity/{model}.json`](../fidelity/{model}.json)"
        if not equal:
            lines.append(f"- `{model}`: its run beside the authors' code differs beyond float rounding ({where}): "
                         "the flag may be a defect of this implementation.")
            continue
        curve = ""
        histories = sorted(results_root.glob(f"train/{model}-*/history.csv"))
        if histories:
            import pandas as pd

            psnr = pd.read_csv(histories[0])["val_psnr"].dropna()
            if len(psnr) > 1:
                trend = ("still rising at the last epoch" if psnr.iloc[-1] > psnr.iloc[:-1].max()
                         else f"best at epoch {int(psnr.idxmax()) + 1}, not rising at the last")
                curve = (f" Here its validation PSNR went from {psnr.iloc[0]:.2f} to {psnr.iloc[-1]:.2f} dB over "
                         f"{len(psnr)} epochs, {trend}.")
        lines.append(
            f"- `{model}`: **a training-budget effect, not a defect.** Its code equals the authors' ({where}): "
            f"same weights give the same outputs and gradients (max relative difference "
            f"{max(one['forward']['max_rel'], one['gradients']['max_rel']):.1g}), and over {training['steps']} "
            f"equal-budget steps on the same batches the loss curves agree to {training['loss_max_rel_over_steps']:.1g} "
            f"relative and validation PSNR to {training['val_psnr_max_abs_over_evals']:.1g} dB." + curve
            + _budget(results_root, model))
    return ["Measured causes:", "", *lines, ""] if lines else []


def _budget(results_root: Path, model: str) -> str:
    """The steps this profile's recipe needs to pass bicubic's validation PSNR, where they were measured
    (``results/fidelity/<model>_budget.json``, ``benchmarks/jasrnet_budget.py``) for this profile."""
    from ..files import read_json

    path = results_root.parent / "fidelity" / f"{model}_budget.json"
    if not path.is_file():
        return ""
    b = read_json(path)
    if b.get("profile") != results_root.name:
        return ""
    budget = b["recipe_epochs"] * b["steps_per_epoch"]
    where = f"[`fidelity/{path.name}`](../fidelity/{path.name})"
    bicubic = f"bicubic's {b['bicubic_val']['val_psnr']:.2f} dB on the same {b['val_faces']} validation faces"
    if b.get("first_step_past_bicubic"):
        step = b["first_step_past_bicubic"]
        return (f" The same recipe run on ({where}) passes {bicubic} at epoch {b['first_epoch_past_bicubic']}, "
                f"step {step}: {step / budget:.1f}× this profile's {budget} steps.")
    tail = [row["val_psnr"] for row in b.get("history", [])[b["recipe_epochs"] - 1:]]
    flat = (f": its validation PSNR stayed between {min(tail):.2f} and {max(tail):.2f} dB from epoch "
            f"{b['recipe_epochs']} to {b['epochs']}" if len(tail) > 1 else "")
    return (f" The same recipe run on for {b['epochs']} epochs ({b['epochs'] * b['steps_per_epoch']} steps, "
            f"{b['epochs'] * b['steps_per_epoch'] / budget:.1f}× this profile's budget, {where}) had not passed "
            f"{bicubic}{flat}: passing it takes longer than this machine measured.")


def _health_section(report: Report) -> list[str]:
    """Which models learned nothing in this profile: PSNR below bicubic's, NME not below the mean-shape floor."""
    results = report.results
    lines = ["## Training health", "",
             "A super-resolution model whose PSNR is below bicubic's, or a landmark model whose NME is not below "
             "the no-learning floor (`mean_shape`: the mean training shape in the crop, whatever the face), "
             f"**{HEALTH_LABEL}**; the tables footnote such values instead of ranking them.", ""]
    missing = [ref for metric, (ref, _) in HEALTH_REFERENCES.items() if not results.has_model(ref)]
    if missing:
        lines += [f"Not checkable here for {', '.join(f'`{m}`' for m in missing)} absent from this profile's "
                  "results.", ""]
    flagged = health_report(results)
    if flagged:
        lines += ["| model | split | metric | value | no-learning reference |", "|---|---|---|---|---|"]
        for f in flagged:
            lines.append(f"| `{f['model']}` | `{f['split']}` | {f['metric'].upper()} | {f['value']:.2f} | "
                         f"{f['reference']:.2f} (`{f['reference_model']}`): {HEALTH_LABEL} |")
        lines.append("")
        lines += measured_causes(results.root, sorted({f["model"] for f in flagged}))
    else:
        lines += ["Every checked value beats its no-learning reference.", ""]
    return lines


def render(report: Report, params: dict[str, Any] | None = None, commit: str | None = None) -> str:
    results = report.results
    profile = results.profile
    out_rel = f"results/{profile}"
    commit = commit or git_commit()
    lines = [
        f"# jasrbench results — profile `{profile}`",
        "",
        "Generated by `jasrbench report` (the last stage of `dvc repro`); do not edit by hand.",
        "JASRNet (Yin, Robinson, Zhang, Fu, *Joint Super-Resolution and Alignment of Tiny Faces*, AAAI 2020) "
        "beside retrained baselines: every table shows our reproduced value (mean ± half-width of its 95% "
        "bootstrap interval) beside the value the paper reports.",
        "",
        f"- **Profile**: `{profile}` ([`pipelines/{profile}.yaml`](../../pipelines/{profile}.yaml))"
        + (_profile_summary(params) if params else ""),
        f"- **Git commit**: `{commit}`",
        f"- **Models**: {len(results.models)} ({', '.join(f'`{m}`' for m in sorted(results.models))})",
        f"- **Regenerate**: `make reproduce` (or `make reproduce PROFILE={profile}`), which runs `dvc repro`; this "
        f"stage alone: `jasrbench report --results {out_rel} --out {out_rel}`.",
        "",
    ]
    if profile == "smoke":
        lines += ["> The `smoke` profile trains tiny models for a few steps on a slice of the data: its numbers test "
                  "the pipeline, not the methods. Compare with the paper on the `paper` profile.", ""]
    lines += _data_section(report, params)
    lines += _health_section(report)
    lines += report.robustness
    lines += ["## Tables", "",
              "Each table is in `tables/` as LaTeX (`.tex`, a booktabs `table` float: `\\usepackage{booktabs}`, "
              "then `\\input{}`), CSV (one row per cell, with the exact intervals and paired tests) and Markdown.",
              ""]
    for table in report.tables:
        lines += [to_markdown(table), f"Files: [`tables/{table.name}.tex`](tables/{table.name}.tex), "
                  f"[`.csv`](tables/{table.name}.csv), [`.md`](tables/{table.name}.md)", ""]
    lines += ["## Figures", ""]
    for stem, caption in report.figures.items():
        lines += [f"### {FIGURE_TITLES.get(stem, stem)}", "", f"![{FIGURE_TITLES.get(stem, stem)}](figures/{stem}.png)",
                  "", f"{caption} ([PDF](figures/{stem}.pdf))", ""]
    if report.grid_faces:
        lines += [f"Faces of the visual comparison: {', '.join(f'`{n}`' for n in report.grid_faces)}.", ""]
    for note in report.notes:
        lines.append(f"- Note: {note}")
    if report.notes:
        lines.append("")
    lines += [
        "## Comparing runs in MLflow",
        "",
        "Every training and evaluation run is logged to MLflow (`mlflow.db` in the repository root unless "
        "`MLFLOW_TRACKING_URI` says otherwise). Start the UI with `make mlflow-ui` (http://127.0.0.1:5000; "
        "`MLFLOW_PORT` picks another port; one worker, no job workers), set the sidebar's switch to "
        "\"Model training\" once (MLflow 3.17 opens experiments as GenAI traces until then), then:",
        "",
        f"- experiments `jasrbench/{profile}/table1` … `table5` hold the evaluation runs of each paper table side by "
        f"side, named after the table's rows; each one's description links its *table view* (the table's metrics "
        f"and the `arch.*` switches that differ); `jasrbench/{profile}/train` holds the training runs (losses and "
        "validation metrics per epoch);",
        "- every run is tagged `model`, `arch`, `profile`, `stage` (train/evaluate), `git_commit`, `tables` and "
        "`table_N = yes`; search e.g. `tags.table_4 = 'yes' and tags.stage = 'evaluate'`, select the runs, "
        "**Compare**;",
        "- through the REST API: `curl -s -X POST http://127.0.0.1:5000/api/2.0/mlflow/runs/search "
        "-H 'Content-Type: application/json' -d '{\"experiment_ids\": [\"ID\"], "
        "\"filter\": \"tags.table_4 = \\u0027yes\\u0027\"}'`.",
        "",
    ]
    return "\n".join(lines)


def _profile_summary(params: dict[str, Any]) -> str:
    train = params.get("train", {})
    ev = params.get("evaluate", {})
    parts = [f"{train.get('epochs')} epochs", f"batch {train.get('batch_size')}", f"lr {train.get('lr')}"]
    if train.get("max_faces"):
        parts.append(f"{train['max_faces']} training faces")
    if ev.get("max_faces"):
        parts.append(f"{ev['max_faces']} test faces per split")
    if ev.get("pairs_per_fold"):
        parts.append(f"{ev['pairs_per_fold']} same + {ev['pairs_per_fold']} different pairs per fold")
    parts.append(f"recognizer {ev.get('recognizer')}")
    return ": " + ", ".join(str(p) for p in parts)


def write(report: Report, params: dict[str, Any] | None = None) -> Path:
    path = report.out / "README.md"
    atomic_write_text(path, render(report, params))
    return path
