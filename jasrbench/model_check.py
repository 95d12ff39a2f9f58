"""``jasrbench model check NAME``: the :class:`~jasrbench.models.base.FaceModel` contract, checked in seconds
before any long run (issue 27); ``jasrbench model list``: every registered model with its package.

One line per check, on the CPU and on CUDA where one exists; a failed check is a :class:`ModelCheckError`
naming the model, the check and what was wrong:

- ``build``: the registry builds it (with ``--set`` overrides);
- ``shapes``: LR B×3×16×16 (128 / ``scale``) → ``sr`` B×3×128×128, each heatmap stage the shape of the
  model's ``heatmap_targets`` (B×(K+1)×h×w at its ``heatmap_stride`` by default);
- ``outputs``: what its tasks promise: a finite SR image (``predicts_sr``), heatmap stages that decode to
  B×K×2 finite landmarks (``predicts_landmarks``);
- ``loss``: ``model.loss`` is a finite scalar and backpropagates to every trainable parameter (DDP runs
  without the unused-parameter search, jasrbench/distributed.py);
- ``state_dict``: loaded into a second build, it gives the same outputs;
- ``seed``: two builds under the same seed give the same outputs;
- ``eval_batch1``: in eval mode a batch of one works and matches that face in a batch of two;
- ``cost``: parameters and FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``, 2 × MACs).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, JasrbenchError

CHECKS = ("build", "shapes", "outputs", "loss", "state_dict", "seed", "eval_batch1", "cost")
HR = 128


class ModelCheckError(JasrbenchError):
    """A model broke the FaceModel contract: names the model, the failed check(s) and why."""

    def __init__(self, model: str, failures: list[CheckResult]):
        self.model, self.failures = model, failures
        first = failures[0]
        more = f" (and {', '.join(f.name for f in failures[1:])})" if len(failures) > 1 else ""
        super().__init__(f"model {model!r} failed check {first.name!r} on {first.device}: {first.detail}{more}")


@dataclass
class CheckResult:
    name: str
    ok: bool | None  # None: skipped (an earlier check failed, or it does not apply)
    detail: str
    device: str

    def line(self) -> str:
        status = {True: "ok", False: "FAIL", None: "skip"}[self.ok]
        return f"  {status:<5} {self.name:<12} {self.detail}"


class _Failed(Exception):
    pass


def _shape(t: Any) -> str:
    return "×".join(str(d) for d in t.shape) if hasattr(t, "shape") else type(t).__name__


def _batch(model, batch_size: int, dev, generator) -> dict[str, Any]:
    import torch

    lr_size = HR // int(model.scale)
    k = int(model.num_points)
    return {"lr": torch.rand(batch_size, 3, lr_size, lr_size, generator=generator).to(dev),
            "hr": torch.rand(batch_size, 3, HR, HR, generator=generator).to(dev),
            "landmarks": (24 + 80 * torch.rand(batch_size, k, 2, generator=generator)).to(dev),
            "visible": torch.ones(batch_size, k, dtype=torch.bool).to(dev)}


def _outputs_of(out) -> list:
    """The output tensors in a fixed order (sr, then each heatmap stage) for comparisons."""
    return [t for t in [out.sr, *(out.heatmaps or [])] if t is not None]


def _same(a, b, exact: bool, atol: float = 0.0) -> str | None:
    """None when two outputs agree; else what differs."""
    import torch

    ta, tb = _outputs_of(a), _outputs_of(b)
    if len(ta) != len(tb):
        return f"{len(ta)} output tensors vs {len(tb)}"
    for i, (x, y) in enumerate(zip(ta, tb, strict=True)):
        what = "sr" if i == 0 else f"heatmaps[{i - 1}]"
        if x.shape != y.shape:
            return f"{what}: shape {_shape(x)} vs {_shape(y)}"
        if exact and not torch.equal(x, y):
            return f"{what}: max difference {(x.float() - y.float()).abs().max().item():.3g}"
        if not exact:
            scale = max(1.0, float(y.float().abs().max().item()))
            diff = float((x.float() - y.float()).abs().max().item())
            if not diff <= atol * scale:
                return f"{what}: max difference {diff:.3g} (tolerance {atol * scale:.3g})"
    return None


def run_checks(name: str, overrides: dict[str, Any] | None = None, device: str = "cpu", seed: int = 0,
               emit: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Every check of :data:`CHECKS` on ``device``; each result is passed to ``emit`` as it is known."""
    import torch

    from .models import FaceModel, build

    overrides = dict(overrides or {})
    dev = torch.device(device)
    results: list[CheckResult] = []
    state: dict[str, Any] = {}

    def make():
        torch.manual_seed(seed)
        if dev.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        model = build(name, **overrides)
        if not isinstance(model, FaceModel):
            raise _Failed(f"the builder returned a {type(model).__name__}, not a jasrbench.models.FaceModel")
        return model.to(dev)

    def forward(model, lr, train: bool):
        model.train(train)
        if train:
            return model(lr)
        with torch.no_grad():
            return model(lr)

    def check_build() -> str:
        model = make()
        state["model"] = model
        tasks = [t for t, on in (("sr", model.predicts_sr), ("landmarks", model.predicts_landmarks)) if on]
        if not tasks:
            raise _Failed("predicts_sr and predicts_landmarks are both False: the model has no task")
        state["tasks"] = tasks
        return f"{type(model).__module__}.{type(model).__name__}, tasks {'+'.join(tasks)}, input {model.input_kind}"

    def check_shapes() -> str:
        model = state["model"]
        gen = torch.Generator().manual_seed(seed)
        batch = _batch(model, 2, dev, gen)
        state["batch"] = batch
        out = forward(model, batch["lr"], train=True)
        state["train_out"] = out
        if not hasattr(out, "sr") or not hasattr(out, "heatmaps"):
            raise _Failed(f"forward returned a {type(out).__name__}, not a jasrbench.models.ModelOutput")
        lr_shape = "×".join(map(str, batch["lr"].shape))
        if out.sr is None or tuple(out.sr.shape) != (2, 3, HR, HR):
            raise _Failed(f"LR {lr_shape} gave sr {_shape(out.sr)}, expected 2×3×{HR}×{HR}")
        if model.predicts_landmarks and out.heatmaps:
            # The model's own targets fix the maps' shape: K + 1 (a background map, the default) or K (DIC).
            expected = tuple(model.heatmap_targets(batch)[0].shape)
            for i, h in enumerate(out.heatmaps):
                if tuple(h.shape) != expected:
                    raise _Failed(f"heatmaps[{i}] is {_shape(h)}, expected {'×'.join(map(str, expected))} (the shape "
                                  f"of its heatmap_targets at heatmap_stride {model.heatmap_stride})")
        stages = ", ".join(_shape(h) for h in out.heatmaps or []) or "none"
        return f"LR {lr_shape} → sr {_shape(out.sr)}, heatmaps [{stages}]"

    def check_outputs() -> str:
        model, out = state["model"], state["train_out"]
        said = []
        if model.predicts_sr:
            if not torch.isfinite(out.sr).all():
                raise _Failed("the SR image holds non-finite values")
            said.append("SR image finite")
        if model.predicts_landmarks:
            if not out.heatmaps:
                raise _Failed("predicts_landmarks is True but forward returned no heatmaps (missing landmark output)")
            points = model.decode_landmarks(out)
            if points is None or tuple(points.shape) != (2, model.num_points, 2):
                raise _Failed(f"landmarks decode to {_shape(points)}, expected 2×{model.num_points}×2")
            if not torch.isfinite(points).all():
                raise _Failed("decoded landmarks hold non-finite values")
            said.append(f"{len(out.heatmaps)} heatmap stage(s) → {model.num_points} landmarks")
        return ", ".join(said)

    def check_loss() -> str:
        model, batch = state["model"], state["batch"]
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not model.trainable or not trainable:
            return "skip:no trainable parameters (nothing to train)"
        model.zero_grad(set_to_none=True)
        out = forward(model, batch["lr"], train=True)
        losses = model.loss(out, batch)
        if not isinstance(losses, dict) or "total" not in losses:
            raise _Failed(f"loss() returned {type(losses).__name__}, expected a dict with 'total'")
        total = losses["total"]
        if not torch.is_tensor(total) or total.numel() != 1:
            raise _Failed(f"loss()['total'] is {_shape(total)}, expected a scalar tensor")
        value = float(total.detach())
        if not math.isfinite(value):
            raise _Failed(f"the loss is {value} (not finite) on a random batch")
        if getattr(model, "closed_form", False):
            return f"loss {value:.4g}; closed form (fitted, no optimizer step): backward not needed"
        if not total.requires_grad:
            raise _Failed(f"the loss {value:.4g} does not depend on any parameter (no graph)")
        total.backward()
        missing = [n for n, p in trainable if p.grad is None]
        if missing:
            raise _Failed(f"the loss does not reach {len(missing)} of {len(trainable)} trainable parameters: "
                          + ", ".join(missing[:5]) + (", …" if len(missing) > 5 else ""))
        bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
        if bad:
            raise _Failed(f"non-finite gradients in {', '.join(bad[:5])}")
        model.zero_grad(set_to_none=True)
        return f"loss {value:.4g} finite; gradients reach all {len(trainable)} trainable tensors"

    def check_state_dict() -> str:
        model, lr = state["model"], state["batch"]["lr"]
        other = build(name, **overrides).to(dev)
        other.load_state_dict(model.state_dict(), strict=True)
        difference = _same(forward(other, lr, False), forward(model, lr, False), exact=True)
        if difference:
            raise _Failed(f"a second build loaded with its state_dict gives other outputs ({difference})")
        return f"{len(model.state_dict())} entries, strict load, same outputs"

    def check_seed() -> str:
        lr = state["batch"]["lr"]
        a, b = make(), make()
        difference = _same(forward(a, lr, False), forward(b, lr, False), exact=True)
        if difference:
            raise _Failed(f"two builds under seed {seed} give other outputs ({difference})")
        again = _same(forward(a, lr, False), forward(a, lr, False), exact=True)
        if again:
            raise _Failed(f"the same model gives other outputs on a second call ({again})")
        return f"two builds under seed {seed}: identical outputs"

    def check_eval_batch1() -> str:
        model, lr = state["model"], state["batch"]["lr"]
        one = forward(model, lr[:1], False)
        if one.sr is None or tuple(one.sr.shape) != (1, 3, HR, HR):
            raise _Failed(f"eval mode on a batch of 1 gave sr {_shape(one.sr)}, expected 1×3×{HR}×{HR}")
        both = forward(model, lr, False)
        first = type(both)(sr=both.sr[:1], heatmaps=[h[:1] for h in both.heatmaps] if both.heatmaps else None)
        difference = _same(one, first, exact=False, atol=1e-4)
        if difference:
            raise _Failed(f"a face alone and in a batch of 2 differ in eval mode ({difference})")
        return "batch of 1 works and matches the batch of 2"

    def check_cost() -> str:
        from torch.utils.flop_counter import FlopCounterMode

        model, lr = state["model"], state["batch"]["lr"]
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(lr[:1])
        flops = counter.get_total_flops()
        state["cost"] = {"parameters": total, "trainable": trainable, "flops": flops}
        return f"{total:,} parameters ({trainable:,} trainable), {flops / 1e9:.3f} GFLOPs per image"

    steps = {"build": check_build, "shapes": check_shapes, "outputs": check_outputs, "loss": check_loss,
             "state_dict": check_state_dict, "seed": check_seed, "eval_batch1": check_eval_batch1,
             "cost": check_cost}
    needs = {"build": (), "shapes": ("build",), "outputs": ("shapes",), "loss": ("shapes",),
             "state_dict": ("shapes",), "seed": ("shapes",), "eval_batch1": ("shapes",), "cost": ("shapes",)}
    passed: set[str] = set()
    for check in CHECKS:
        blocked = [n for n in needs[check] if n not in passed]
        if blocked:
            result = CheckResult(check, None, f"skipped: {blocked[0]} failed", str(dev))
        else:
            try:
                detail = steps[check]()
                if detail.startswith("skip:"):
                    result = CheckResult(check, None, detail[5:], str(dev))
                else:
                    result = CheckResult(check, True, detail, str(dev))
                passed.add(check)
            except _Failed as exc:
                result = CheckResult(check, False, str(exc), str(dev))
            except Exception as exc:  # the model's own code raised: named, with the exception
                result = CheckResult(check, False, f"raised {type(exc).__name__}: {exc}", str(dev))
        results.append(result)
        if emit is not None:
            emit(result)
    return results


def devices(choice: str = "auto") -> list[str]:
    """``auto``: the CPU, and CUDA where present; else the one named."""
    import torch

    if choice == "auto":
        return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    return [choice]


def check_model(name: str, overrides: dict[str, Any] | None = None, device: str = "auto", seed: int = 0,
                emit: Callable[[str], None] | None = None) -> list[CheckResult]:
    """All checks on each device of :func:`devices`; raises :class:`ModelCheckError` on the first device with a
    failure (naming the model and the check). ``emit`` gets one line per check."""
    from .models import plugin_of, spec

    module = getattr(spec(name).builder, "__module__", "?")  # an unknown model or a broken plugin: named first
    plugin = plugin_of(name)
    if emit:
        where = (f"plugin: {plugin.package}, entry point {plugin.entry_point!r}" if plugin
                 else "built-in" if module.startswith("jasrbench.") else f"registered by {module}")
        emit(f"model {name} ({where})" + (f", overrides {overrides}" if overrides else ""))
    everything: list[CheckResult] = []
    for dev in devices(device):
        if emit:
            emit(f"on {dev}:")
        results = run_checks(name, overrides, dev, seed, emit=(lambda r: emit(r.line())) if emit else None)
        everything += results
        failed = [r for r in results if r.ok is False]
        if failed:
            raise ModelCheckError(name, failed)
    return everything


def _parse_sets(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (a build keyword, e.g. n_feats=16)")
        out[key] = yaml.safe_load(value)
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="check a registered model (built-in or plugin) against the FaceModel contract")
    check.add_argument("name", help="a registered model (`jasrbench model list`)")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a build keyword (value parsed as YAML), e.g. --set n_feats=16; repeat for more")
    check.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (the CPU, then CUDA if present)")
    check.add_argument("--seed", type=int, default=0)
    sub.add_parser("list", help="every registered model with the package that provides it")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        from .models import available, plugins

        found = plugins()
        for name, package in available(with_package=True).items():
            where = f"  (entry point {found[name].entry_point!r})" if name in found else ""
            print(f"{name:<22} {package}{where}")
        return 0
    results = check_model(args.name, _parse_sets(args.set), args.device, args.seed, emit=print)
    passed = sum(r.ok is True for r in results)
    print(f"model {args.name}: all checks passed ({passed} passed, {sum(r.ok is None for r in results)} skipped)")
    return 0
