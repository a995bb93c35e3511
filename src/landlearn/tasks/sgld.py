"""Stochastic gradient Langevin dynamics from a persistent replay buffer (JEM's sampler).

``x_{t+1} = x_t − step_size · ∇ₓE(x_t) + noise · ε``, ε ~ N(0, I), for ``steps`` steps, starting
from samples drawn out of a :class:`ReplayBuffer` of earlier chains (persistent contrastive
divergence, Tieleman 2008; Du & Mordatch 2019); a share ``reinit`` of each batch starts afresh
from the buffer's initial distribution. As in Grathwohl et al.'s code the step size and the noise
are decoupled (``step_size`` 1, ``noise`` 0.01 rather than the Langevin pair ε/2 and √ε): a
"sampler" tuned for a useful gradient of ``p(x)``, not an exact MCMC.

The initial distribution is ``uniform`` (U(−1, 1) in normalised units) or ``gaussian``: per class,
the mean and per-value standard deviation of the training images (a diagonal stand-in for the
full-covariance class-conditional Gaussian of JEM++, Yang & Ji 2021; a full covariance of a
3×64×64 chip would hold 1.5·10⁸ numbers). ``grad_clip`` bounds the gradient of each step,
``sample_clip`` the samples (both element-wise; None leaves them free).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from landlearn.errors import LandlearnError

__all__ = ["ReplayBuffer", "sgld"]

INITS = ("uniform", "gaussian")


class ReplayBuffer:
    """``size`` samples of shape ``shape`` (and the class each was started from), on CPU.

    Args:
        size: samples kept.
        shape: ``(C, H, W)`` of one sample.
        init: ``uniform`` or ``gaussian`` (needs :meth:`fit_gaussian` before the first draw).
        reinit: share of each drawn batch that starts from the initial distribution.
        seed: the buffer's own random stream, so a run is repeatable.
    """

    def __init__(
        self,
        size: int,
        shape: tuple[int, ...],
        *,
        num_classes: int,
        init: str = "uniform",
        reinit: float = 0.05,
        seed: int = 0,
    ) -> None:
        if init not in INITS:
            raise LandlearnError(f"sgld init must be one of {', '.join(INITS)}, got {init!r}")
        if size < 1 or not 0.0 <= reinit <= 1.0:
            raise LandlearnError(
                f"replay buffer needs size >= 1 and reinit in [0, 1], got {size}, {reinit}"
            )
        self.size, self.shape, self.init = int(size), tuple(shape), init
        self.num_classes, self.reinit = int(num_classes), float(reinit)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.class_mean: Tensor | None = None
        self.class_std: Tensor | None = None
        self.samples = torch.empty(0)
        self.classes = torch.empty(0, dtype=torch.long)

    # ---- the initial distribution -------------------------------------------------------
    def fit_gaussian(self, images: Tensor, labels: Tensor) -> None:
        """Per-class mean and standard deviation of normalised training ``images`` (B, C, H, W)."""
        k = self.num_classes
        flat = images.detach().float().cpu()
        mean = flat.mean(0, keepdim=True).repeat(k, *([1] * (flat.ndim - 1)))
        std = flat.std(0, keepdim=True).repeat(k, *([1] * (flat.ndim - 1)))
        for c in range(k):
            pick = flat[labels.cpu() == c]
            if len(pick) >= 2:
                mean[c], std[c] = pick.mean(0), pick.std(0)
        self.class_mean, self.class_std = mean, std.clamp_min(1e-3)

    def initial(self, n: int, classes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` fresh samples and the class each was drawn for (random when not given)."""
        if classes is None:
            classes = torch.randint(self.num_classes, (n,), generator=self.generator)
        if self.init == "uniform":
            x = torch.rand((n, *self.shape), generator=self.generator) * 2 - 1
            return x, classes
        if self.class_mean is None or self.class_std is None:
            raise LandlearnError("sgld init 'gaussian' needs fit_gaussian() before sampling")
        eps = torch.randn((n, *self.shape), generator=self.generator)
        return self.class_mean[classes] + self.class_std[classes] * eps, classes

    # ---- draw and push back -------------------------------------------------------------
    def draw(self, n: int, classes: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` starting points, their classes, and their buffer slots (−1: a fresh sample).

        With ``classes``, buffer samples are picked among those started for that class (p(x|y)).
        The buffer fills up with fresh samples before it is drawn from.
        """
        if len(self.samples) < self.size:
            x, c = self.initial(n, classes)
            return x, c, torch.full((n,), -1, dtype=torch.long)
        if classes is None:
            slots = torch.randint(self.size, (n,), generator=self.generator)
        else:
            slots = torch.empty(n, dtype=torch.long)
            for i, y in enumerate(classes.cpu().tolist()):
                hits = torch.nonzero(self.classes == y).flatten()
                pool = hits if len(hits) else torch.arange(self.size)
                slots[i] = pool[torch.randint(len(pool), (1,), generator=self.generator)]
        x, c = self.samples[slots].clone(), self.classes[slots].clone()
        fresh = torch.rand(n, generator=self.generator) < self.reinit
        if fresh.any():
            given = None if classes is None else c[fresh]
            x[fresh], c[fresh] = self.initial(int(fresh.sum()), given)
        return x, c, slots

    def push(self, x: Tensor, classes: Tensor, slots: Tensor) -> None:
        """Put sampled ``x`` back where it came from (appending while the buffer fills)."""
        x, classes = x.detach().float().cpu(), classes.detach().cpu()
        if len(self.samples) < self.size:
            room = self.size - len(self.samples)
            self.samples = torch.cat([self.samples.reshape(-1, *self.shape), x[:room]])
            self.classes = torch.cat([self.classes, classes[:room]])
            return
        keep = slots >= 0
        self.samples[slots[keep]] = x[keep]
        self.classes[slots[keep]] = classes[keep]

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and the random state, for a checkpoint (``weights_only`` loadable)."""
        out: dict[str, Any] = {
            "samples": self.samples,
            "classes": self.classes,
            "rng": self.generator.get_state(),
        }
        if self.class_mean is not None and self.class_std is not None:
            out["class_mean"], out["class_std"] = self.class_mean, self.class_std
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        self.samples = state["samples"].clone()
        self.classes = state["classes"].clone()
        self.generator.set_state(state["rng"])
        self.class_mean = state.get("class_mean")
        self.class_std = state.get("class_std")

    def __len__(self) -> int:
        return len(self.samples)


def sgld(
    energy: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    steps: int = 20,
    step_size: float = 1.0,
    noise: float = 0.01,
    grad_clip: float | None = None,
    sample_clip: float | None = None,
    model: nn.Module | None = None,
) -> Tensor:
    """Run ``steps`` SGLD steps on ``x`` down ``energy`` (one energy per sample, summed).

    ``model`` is put in eval mode while sampling (no dropout, no batch-norm updates) and given
    back in its former mode; its parameters get no gradient. Returns detached samples.
    """
    was_training = model.training if model is not None else False
    params = [p for p in model.parameters() if p.requires_grad] if model is not None else []
    for p in params:
        p.requires_grad_(False)
    if model is not None:
        model.eval()
    try:
        x = x.detach().clone()
        for _ in range(int(steps)):
            x.requires_grad_(True)
            with torch.enable_grad():
                grad = torch.autograd.grad(energy(x).sum(), x)[0]
            if grad_clip is not None:
                grad = grad.clamp(-grad_clip, grad_clip)
            x = (x.detach() - step_size * grad + noise * torch.randn_like(x)).detach()
            if sample_clip is not None:
                x = x.clamp(-sample_clip, sample_clip)
    finally:
        for p in params:
            p.requires_grad_(True)
        if model is not None:
            model.train(was_training)
    return x.detach()
