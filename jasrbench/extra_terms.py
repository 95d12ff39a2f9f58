"""The optional GAN and perceptual terms a profile may add to any SR model's own loss (off in the paper)."""

from __future__ import annotations

from typing import Any

import torch

from . import distributed, runtime
from .errors import ConfigError
from .models import FaceModel
from .recipe import TrainConfig


class ExtraTerms:
    """The GAN and perceptual terms a profile may add to any SR model's own loss (off by default).

    Owns the discriminator and its Adam optimizer (same lr, betas and schedule as the model's),
    and the frozen VGG; :meth:`add` extends the model's losses, :meth:`discriminator_step`
    trains the discriminator on (HR, detached SR) after each generator step.
    """

    def __init__(self, cfg: TrainConfig, model: FaceModel, dev: torch.device):
        from .models import adversarial

        self.cfg, self.adv = cfg, adversarial
        self.disc = self.disc_opt = self.disc_sched = self.perceptual = None
        wants = cfg.adversarial_weight > 0 or cfg.perceptual_weight > 0
        if wants and not model.predicts_sr:
            raise ConfigError(f"adversarial/perceptual terms need an SR model; {type(model).__name__} "
                              "is alignment-only here")
        if cfg.adversarial_weight > 0:
            layout = runtime.memory_format(dev, runtime.resolve_precision(cfg.precision, dev))
            disc = adversarial.Discriminator(cfg.discriminator_width).to(dev).to(memory_format=layout)
            self.disc = distributed.sync_batchnorm(disc, dev)  # not DDP-wrapped: its gradients are averaged below
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=cfg.betas)
            self.disc_sched = torch.optim.lr_scheduler.MultiStepLR(self.disc_opt, cfg.milestones, cfg.gamma)
        if cfg.perceptual_weight > 0:
            self.perceptual = adversarial.PerceptualLoss(cfg.perceptual_layer).to(dev)

    @property
    def active(self) -> bool:
        return self.disc is not None or self.perceptual is not None

    def add(self, losses: dict[str, torch.Tensor], sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(sr, hr)
            losses["total"] = losses["total"] + self.cfg.perceptual_weight * losses["perceptual"]
        if self.disc is not None:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            losses["adversarial"] = self.adv.generator_adversarial_loss(self.disc(sr))
            for p in self.disc.parameters():
                p.requires_grad_(True)
            losses["total"] = losses["total"] + self.cfg.adversarial_weight * losses["adversarial"]
        return losses

    def discriminator_step(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor | None:
        if self.disc is None:
            return None
        loss = self.adv.discriminator_loss(self.disc(hr), self.disc(sr.detach()))
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.disc.parameters())
        self.disc_opt.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any] | None:
        if self.disc is None:
            return None
        return {"model": self.disc.state_dict(), "optimizer": self.disc_opt.state_dict(),
                "scheduler": self.disc_sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.disc is not None and state is not None:
            self.disc.load_state_dict(state["model"])
            self.disc_opt.load_state_dict(state["optimizer"])
            self.disc_sched.load_state_dict(state["scheduler"])

    def epoch_done(self) -> None:
        if self.disc_sched is not None:
            self.disc_sched.step()
