"""A training run's fingerprint and the resume decision (issue 10).

A run is resumed only when it is unfinished and its fingerprint matches: the resolved config, the bytes
of the prepared split it reads and the source of every module it runs (:func:`jasrbench.deps.stage_code`,
the same files dvc.yaml declares). Otherwise a code or data change could "resume" a finished run and
retrain nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from . import deps
from .errors import DataError
from .files import file_sha256
from .runtime import load_checkpoint

log = logging.getLogger(__name__)


def config_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


TRAIN_ENTRY = ("jasrbench.train",)


def run_fingerprint(run_config: dict[str, Any], split_path: Path, arch: str) -> dict[str, Any]:
    """{"config", "data", "code": {file: digest}, "id"}: what a run's weights depend on."""
    parts = {"config": config_hash(run_config), "data": file_sha256(split_path)[:16],
             "code": deps.code_digest(deps.stage_code(TRAIN_ENTRY, arch))}
    return {**parts, "id": config_hash(parts)}


def fingerprint_difference(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """What differs, for the log: e.g. ``code (jasrbench/models/jasrnet.py)``, ``config``, ``data``."""
    if not isinstance(old, dict) or "id" not in old:
        return "it has no fingerprint (written by older code)"
    why = [name for key, name in (("config", "config"), ("data", "prepared data")) if old.get(key) != new[key]]
    old_code, new_code = old.get("code") or {}, new["code"]
    changed = sorted(f for f in set(old_code) | set(new_code) if old_code.get(f) != new_code.get(f))
    if changed:
        why.append("code (" + ", ".join(changed[:5]) + (", …" if len(changed) > 5 else "") + ")")
    why = why or ["fingerprint"]
    return "its " + " and ".join(why) + (" differs" if len(why) == 1 else " differ")


def resume_decision(last_path: Path, fingerprint: dict[str, Any], epochs: int, resume: bool) -> dict[str, Any] | None:
    """The resume state to continue from, or None to start afresh (the reason is logged).

    A truncated or foreign ``last.pt`` is an error naming the file (never silently replaced).
    """
    if not resume or not last_path.is_file():
        return None
    state = load_checkpoint(last_path)
    if state.get("kind", "resume") != "resume" or "optimizer" not in state:
        raise DataError(last_path, "holds a trained model, not a resume state; delete it or pass --no-resume")
    if state.get("fingerprint", {}).get("id") != fingerprint["id"]:
        log.warning("%s not resumed: %s; starting afresh", last_path,
                    fingerprint_difference(state.get("fingerprint"), fingerprint))
        return None
    if state.get("finished") or int(state["epoch"]) >= epochs:
        log.info("%s is a finished run: starting afresh", last_path)
        return None
    return state


def retire_resume_state(last_path: Path) -> None:
    """A finished run's ``last.pt`` is removed so that no later run can resume it."""
    last_path.unlink(missing_ok=True)
