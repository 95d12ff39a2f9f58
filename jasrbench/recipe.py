"""The training recipe's schema: a profile's ``train`` block (with a model's overrides), checked and resolved.

Torch-free on purpose: every stage loads and checks params, and the profile check and the training
stages read the same :class:`TrainConfig` (one schema; issue 23). :func:`check_train` names the key of
an unknown or out-of-range setting before any work starts; :meth:`TrainConfig.from_dict` runs it and
coerces the values. The validation carve and the kept-epoch metric live in :mod:`jasrbench.holdout`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")  # autocast precision of training (jasrbench.runtime resolves auto)
SELECT = ("auto", "psnr", "nme")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transform (uniform draws; jasrbench.data.augment applies them)."""

    scale: tuple[float, float] = (0.95, 1.05)  # >1 zooms in
    rotation: float = 30.0  # degrees, ± this
    flip: float = 0.5  # probability of a horizontal flip
    translate: float = 0.0  # fraction of the HR size, ± this in x and y

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        d = dict(d or {})
        if "scale" in d:
            d["scale"] = tuple(float(v) for v in d["scale"])
        return cls(**d)

    @property
    def is_identity(self) -> bool:
        return self.scale == (1.0, 1.0) and self.rotation == 0 and self.flip == 0 and self.translate == 0


@dataclass
class TrainConfig:
    """The resolved training settings of one run (profile ``train`` + the model's ``train`` overrides)."""

    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    milestones: list[int]
    gamma: float
    copies_per_epoch: float
    max_faces: int | None
    val_faces: int
    augment: AugmentConfig
    select: str  # "auto" | "psnr" | "nme"
    # The fast path (issue 12): autocast precision (auto|fp32|bf16, jasrbench.runtime) and how many steps
    # may pass between two host reads of the device-side loss sums (the finiteness check; also at
    # checkpoints and validation). Device, compile, checkpoint_every, eval_batch_size: jasrbench.settings.
    precision: str = "auto"
    check_every: int = 100
    # Optional GAN/perceptual terms (jasrbench.extra_terms); 0 = off, as in the paper.
    adversarial_weight: float = 0.0
    perceptual_weight: float = 0.0
    perceptual_layer: str = "relu5_4"
    discriminator_width: int = 64
    # Train on a camera degradation (jasrbench.data.degradations, e.g. "mixed"): the LR of each batch is made
    # from its augmented HR by the same code as a prepared degraded split. None: the split's own LR kernel.
    degradation: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], key: str = "train") -> TrainConfig:
        """Check ``d`` (errors name ``key.FIELD``) and resolve it, defaults filled in."""
        check_train(d, key)
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING
                   and f.name not in _FILLED]
        if missing:
            raise ConfigError(f"{key}.{missing[0]}: required, missing")
        d = dict(d)
        d["augment"] = AugmentConfig.from_dict(d.get("augment"))
        d["betas"] = tuple(float(b) for b in d.get("betas", (0.9, 0.999)))
        d.setdefault("select", "auto")
        d["max_faces"] = None if d.get("max_faces") is None else int(d["max_faces"])
        # YAML 1.1 reads "1e-3" (no dot) as a string: coerce the numbers explicitly.
        for name in ("lr", "weight_decay", "gamma", "copies_per_epoch", "adversarial_weight", "perceptual_weight"):
            if name in d:
                d[name] = float(d[name])
        for name in ("epochs", "batch_size", "val_faces", "check_every", "discriminator_width"):
            if name in d:
                d[name] = int(d[name])
        d["milestones"] = [int(m) for m in d["milestones"]]
        return cls(**d)


_FILLED = ("select", "max_faces", "augment", "betas")  # no dataclass default, but from_dict fills them


def _number(value: Any, key: str, *, integer: bool = False) -> float:
    try:  # YAML 1.1 reads "1e-3" (no dot) as a string: numbers are coerced, not type-checked
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if integer and number != int(number):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}") from None
    return number


def _at_least(value: Any, key: str, low: float, *, integer: bool = False, strict: bool = False) -> None:
    number = _number(value, key, integer=integer)
    if number < low or (strict and number == low):
        raise ConfigError(f"{key} must be {'>' if strict else '>='} {low:g}, got {value!r}")


# Runtime settings (jasrbench/settings.py: speed, not results) that older profiles kept as params, and the
# environment variable each now comes from. Written out here: importing settings.py would make it a code
# dependency of every stage that checks params.
RUNTIME_SETTINGS = {
    "train.device": "JASRBENCH_DEVICE", "train.compile": "JASRBENCH_COMPILE",
    "train.checkpoint_every": "JASRBENCH_CHECKPOINT_EVERY", "train.eval_batch_size": "JASRBENCH_EVAL_BATCH_SIZE",
    "train.fixed_order_grads": "JASRBENCH_FIXED_ORDER_GRADS",
    "evaluate.device": "JASRBENCH_DEVICE", "evaluate.batch_size": "JASRBENCH_EVAL_BATCH_SIZE",
}


def reject_runtime_settings(section: dict[str, Any], kind: str, key: str) -> None:
    """A ConfigError naming ``key.FIELD`` and its variable when a profile's ``kind`` section
    (``train``/``evaluate``) still sets a runtime setting."""
    for name in sorted(section or {}):
        var = RUNTIME_SETTINGS.get(f"{kind}.{name}")
        if var is not None:
            raise ConfigError(f"{key}.{name}: a runtime setting, not an experiment param (it changes speed, "
                              f"not results): remove it and set {var} (see jasrbench/settings.py)")


# name: (lowest value, integer, strictly above)
_RANGES = {"epochs": (1, True, False), "batch_size": (1, True, False), "val_faces": (1, True, False),
           "lr": (0, False, True), "weight_decay": (0, False, False), "gamma": (0, False, True),
           "copies_per_epoch": (0, False, True), "adversarial_weight": (0, False, False),
           "perceptual_weight": (0, False, False), "discriminator_width": (1, True, False),
           "check_every": (1, True, False)}


def check_train(train: dict[str, Any], key: str, only: dict[str, Any] | None = None) -> None:
    """One-line ConfigError naming ``key.FIELD`` for an unknown or out-of-range training setting.

    ``only``: check just these fields (a model's ``train`` overrides, merged over the profile's).
    """
    given = set(only if only is not None else train)
    reject_runtime_settings({k: None for k in given}, "train", key)
    known = {f.name for f in fields(TrainConfig)}
    for name in sorted(given - known):
        raise ConfigError(f"{key}.{name}: unknown key; known: {', '.join(sorted(known))}")
    for name, (low, integer, strict) in _RANGES.items():
        if name in given and name in train:
            _at_least(train[name], f"{key}.{name}", low, integer=integer, strict=strict)
    if "max_faces" in given and train.get("max_faces") is not None:
        _at_least(train["max_faces"], f"{key}.max_faces", 1, integer=True)
    if "milestones" in given:
        if not isinstance(train["milestones"], list):
            raise ConfigError(f"{key}.milestones must be a list of epochs, got {train['milestones']!r}")
        for m in train["milestones"]:
            _at_least(m, f"{key}.milestones", 1, integer=True)
    if "betas" in given:
        betas = train["betas"]
        if not isinstance(betas, (list, tuple)) or len(betas) != 2 or not all(
                0 <= _number(b, f"{key}.betas") < 1 for b in betas):
            raise ConfigError(f"{key}.betas must be two numbers in [0, 1), got {betas!r}")
    if "select" in given and train["select"] not in SELECT:
        raise ConfigError(f"{key}.select must be one of {', '.join(SELECT)}, got {train['select']!r}")
    if "precision" in given and train["precision"] not in PRECISIONS:
        raise ConfigError(f"{key}.precision must be one of {', '.join(PRECISIONS)}, got {train['precision']!r}")
    if "augment" in given:
        _check_augment(train["augment"] or {}, f"{key}.augment")
    if "degradation" in given and train["degradation"] is not None and not isinstance(train["degradation"], str):
        raise ConfigError(f"{key}.degradation must be the name of a camera degradation or null, "
                          f"got {train['degradation']!r}")


def _check_augment(augment: Any, key: str) -> None:
    if not isinstance(augment, dict):
        raise ConfigError(f"{key} must be a mapping, got {augment!r}")
    allowed = {f.name for f in fields(AugmentConfig)}
    for name in sorted(set(augment) - allowed):
        raise ConfigError(f"{key}.{name}: unknown key; known: {', '.join(sorted(allowed))}")
    if "scale" in augment:
        scale = augment["scale"]
        if (not isinstance(scale, (list, tuple)) or len(scale) != 2
                or not 0 < _number(scale[0], f"{key}.scale") <= _number(scale[1], f"{key}.scale")):
            raise ConfigError(f"{key}.scale must be [low, high] with 0 < low <= high, got {scale!r}")
    for name in ("rotation", "translate"):
        if name in augment:
            _at_least(augment[name], f"{key}.{name}", 0)
    if "flip" in augment and not 0 <= _number(augment["flip"], f"{key}.flip") <= 1:
        raise ConfigError(f"{key}.flip must be a probability in [0, 1], got {augment['flip']!r}")
