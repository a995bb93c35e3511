r"""Joint Energy-based Models: a classifier that is also a density model (Grathwohl et al. 2020).

The logits ``f(x)`` of any registry classifier give ``p(y|x) = softmax f(x)`` and an energy
``E(x) = −logsumexp_y f(x)[y]`` with ``p(x) ∝ exp(−E(x))``. :class:`JEMTask` trains

``L = w_yx · CE(f(x), y) + w_px · (mean E(x) − mean E(x′))
      + w_xy · (mean −f(x)[y] + mean f(x′_y)[y])
      + reg_r · mean E(x)² + reg_u · mean E(x′)² + reg_g · mean ‖∇ₓE(x)‖²``

where ``x′`` are SGLD samples (:mod:`landlearn.tasks.sgld`) continued from a persistent replay
buffer, ``x′_y`` class-conditional ones (the optional p(x|y) term of JEM++), and the three
regularisers are the founding study's REG_r (real energies), REG_u (sampled energies) and REG_g
(input-gradient norm). The generative term is unbounded below and is what makes JEM diverge; the
regularisers and :class:`~landlearn.tasks.guard.DivergenceGuard` are the two remedies, used
alone or together.

Semi-supervised: with ``unlabelled: true`` and a datamodule whose ``label_fraction`` left
samples unlabelled, each step also draws an unlabelled batch, normalised and augmented by the
datamodule like a training batch; it enters the p(x) term (and REG_r) only, never the
cross-entropy.

The replay buffer is saved in checkpoints (``jem_replay_buffer``) and restored on resume; the
guard snapshots it with the weights. Before the bundle is exported (best weights loaded),
:meth:`JEMTask.prepare_export` scores the validation images and keeps their energy quantiles in
the bundle (``extra["jem"]["energy_reference"]``): ``landlearn map`` of a JEM bundle then adds an
``energy`` band scaled around that range, and a user can read a map's energy against the
validation data's (e.g. above its 99th percentile: unlike anything the model was checked on).
The first 64 samples of the last SGLD chain are kept in ``sgld_samples`` (normalised units) for
the run's sample grid.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import Tensor

from landlearn.errors import LandlearnError
from landlearn.tasks.base import SupervisedTask
from landlearn.tasks.classification import ClassificationTask
from landlearn.tasks.segmentation import SegmentationTask
from landlearn.tasks.sgld import INITS, ReplayBuffer, sgld
from landlearn.tasks.unlabelled import UnlabelledStream
from landlearn.uncertainty import energy

log = logging.getLogger(__name__)

__all__ = ["JEMTask", "SegmentationJEMTask"]

_BUFFER_KEY = "jem_replay_buffer"
ENERGY_QUANTILES = (0.005, 0.05, 0.5, 0.95, 0.995)
"""Validation-energy quantiles a JEM bundle keeps (``energy_reference``: ``p0.5`` … ``p99.5``)."""
_GAUSSIAN_FIT_IMAGES = 2000


def _check_options(
    name: str, init: str, mode: str | None, sgld_steps: int, buffer_size: int
) -> None:
    if init not in INITS:
        raise LandlearnError(f"{name} init must be one of {', '.join(INITS)}, got {init!r}")
    if (mode or "multiclass") != "multiclass":
        raise LandlearnError(f"{name} is multiclass: its energy is a logsumexp over classes")
    if int(sgld_steps) < 1 or int(buffer_size) < 1:
        raise LandlearnError(
            f"{name} needs sgld_steps >= 1 and buffer_size >= 1, got {sgld_steps}, {buffer_size}"
        )


class _EnergyTerms(SupervisedTask):
    """What JEM adds to a supervised task: the buffer, SGLD, the energy terms, their state.

    The hooks that differ between a classifier and a segmenter: :meth:`_tile_energy` (one
    energy per image from the logits) and :meth:`_buffer_shape` (the shape of a sample).
    """

    buffer: ReplayBuffer | None
    energy_reference: dict[str, float]
    sgld_samples: Tensor | None

    def _init_energy_state(self) -> None:
        self.buffer = None
        self.energy_reference = {}
        self.sgld_samples = None
        self._buffer_state: dict[str, Any] | None = None
        self._unlabelled: UnlabelledStream | None = None

    def _tile_energy(self, logits: Tensor) -> Tensor:
        """One energy per image: ``−logsumexp`` of its logits."""
        return energy(logits)

    def _reference_energies(self, logits: Tensor) -> Tensor:
        """What the bundle's energy percentiles are taken over: one energy per image."""
        return energy(logits)

    def _buffer_shape(self, like: Tensor) -> tuple[int, ...]:
        """The shape of one SGLD sample: that of the real images."""
        return tuple(like.shape[1:])

    def _gaussian_crop(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Images and labels the buffer's Gaussian is fitted to (a classifier: as they are)."""
        return x, y

    # ---- the buffer and the unlabelled stream -------------------------------------------
    def _datamodule(self) -> Any:
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def _make_buffer(self, shape: tuple[int, ...]) -> ReplayBuffer:
        hp = self.hparams
        seed = int(getattr(self._datamodule(), "seed", 0))
        buffer = ReplayBuffer(
            int(hp["buffer_size"]),
            shape,
            num_classes=int(hp["num_classes"]),
            init=hp["init"],
            reinit=float(hp["reinit"]),
            seed=seed,
        )
        if self._buffer_state is not None:
            buffer.load_state_dict(self._buffer_state)
            self._buffer_state = None
        elif hp["init"] == "gaussian":
            self._fit_gaussian(buffer)
        return buffer

    def _fit_gaussian(self, buffer: ReplayBuffer) -> None:
        dm = self._datamodule()
        images, labels, n = [], [], 0
        for batch in dm.train_dataloader():
            batch = dm.on_after_batch_transfer(batch, 0)
            x = self.inputs(batch)
            assert isinstance(x, Tensor)
            xi, yi = self._gaussian_crop(x, self._target(batch))
            images.append(xi.float().cpu())
            labels.append(yi.cpu())
            n += len(images[-1])
            if n >= _GAUSSIAN_FIT_IMAGES:
                break
        buffer.fit_gaussian(torch.cat(images), torch.cat(labels))
        log.info("JEM buffer: class-conditional Gaussian fitted to %d training images", n)

    def on_fit_start(self) -> None:
        """Open the unlabelled stream when asked for (semi-supervised)."""
        super().on_fit_start()
        if self.hparams["unlabelled"]:
            self._unlabelled = UnlabelledStream(
                getattr(self.trainer, "datamodule", None), f"{type(self).__name__} unlabelled: true"
            )

    def _unlabelled_batch(self) -> Tensor | None:
        if self._unlabelled is None:
            return None
        x = self.inputs(self._unlabelled.next(self.device))
        assert isinstance(x, Tensor)
        return x

    # ---- sampling -----------------------------------------------------------------------
    def _sample(self, n: int, like: Tensor, classes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` SGLD samples continued from the buffer (class-conditional with ``classes``)."""
        if self.buffer is None:
            self.buffer = self._make_buffer(self._buffer_shape(like))
        x0, c, slots = self.buffer.draw(n, classes)
        hp = self.hparams
        if classes is None:

            def e(t: Tensor) -> Tensor:
                return self._tile_energy(self(t))

        else:
            cond = c.to(like.device)

            def e(t: Tensor) -> Tensor:
                return -self(t).float().gather(1, cond[:, None])[:, 0]

        xs = sgld(
            e,
            x0.to(like.device, like.dtype),
            steps=int(hp["sgld_steps"]),
            step_size=float(hp["sgld_step_size"]),
            noise=float(hp["sgld_noise"]),
            grad_clip=hp["grad_clip"],
            sample_clip=hp["sample_clip"],
            model=self.model,
        )
        self.buffer.push(xs, c, slots)
        return xs, c.to(like.device)

    # ---- the step -----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:  # type: ignore[override]
        """Cross-entropy on labelled images plus the energy terms (see the module docstring)."""
        hp = self.hparams
        x = self.inputs(batch)
        if not isinstance(x, Tensor):
            raise LandlearnError(
                f"{type(self).__name__} reads one input; give the datamodule one input"
            )
        y = self._target(batch)
        head = self.head_names[0]
        if not self.losses:
            self.configure_losses(None)
        reals = [x]
        unlabelled = self._unlabelled_batch()
        if unlabelled is not None:
            reals.append(unlabelled)
        x_real = torch.cat(reals) if len(reals) > 1 else x
        grad_pen = None
        if float(hp["reg_g"]) > 0:
            x_real = x_real.detach().requires_grad_(True)
            logits_real = self(x_real)
            e_real = self._tile_energy(logits_real)
            (g,) = torch.autograd.grad(e_real.sum(), x_real, create_graph=True)
            grad_pen = g.flatten(1).pow(2).sum(1).mean()
        else:
            logits_real = self(x_real)
            e_real = self._tile_energy(logits_real)
        logits = logits_real[: len(x)]
        loss_yx = self.losses[head](logits, y)
        total = float(hp["pyx_weight"]) * loss_yx
        logs: dict[str, Tensor] = {"train_ce": loss_yx.detach()}
        gap = torch.zeros((), device=x.device)
        if float(hp["px_weight"]) > 0 or float(hp["reg_u"]) > 0:
            xs, _ = self._sample(len(x_real), x_real.detach())
            e_fake = self._tile_energy(self(xs))
            gap = e_real.mean() - e_fake.mean()
            total = total + float(hp["px_weight"]) * gap
            if float(hp["reg_u"]) > 0:
                total = total + float(hp["reg_u"]) * e_fake.pow(2).mean()
            logs["train_energy_fake"] = e_fake.mean().detach()
            self.sgld_samples = xs[:64].detach().float().cpu()
        if float(hp["pxy_weight"]) > 0:
            xs_y, c = self._sample(len(x), x.detach(), classes=y)
            e_xy = -logits.float().gather(1, y[:, None])[:, 0]
            e_xy_fake = -self(xs_y).float().gather(1, c[:, None])[:, 0]
            total = total + float(hp["pxy_weight"]) * (e_xy.mean() - e_xy_fake.mean())
        if float(hp["reg_r"]) > 0:
            total = total + float(hp["reg_r"]) * e_real.pow(2).mean()
        if grad_pen is not None:
            total = total + float(hp["reg_g"]) * grad_pen
            logs["train_grad_norm2"] = grad_pen.detach()
        logs["train_energy_real"] = e_real.mean().detach()
        logs["train_energy_gap"] = gap.detach().abs()
        bs = len(x)
        self.log("train_loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        for name, value in logs.items():
            self.log(name, value, on_step=False, on_epoch=True, batch_size=bs)
        return {"loss": total, "energy_gap": gap.detach().abs()}

    # ---- state: checkpoints and the guard -----------------------------------------------
    def guard_state(self) -> dict[str, Any]:
        """The replay buffer, for :class:`~landlearn.tasks.guard.DivergenceGuard` snapshots."""
        if self.buffer is None:
            return {}
        state = self.buffer.state_dict()
        return {_BUFFER_KEY: {k: v.clone() for k, v in state.items()}}

    def load_guard_state(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`guard_state` gave."""
        if _BUFFER_KEY in state and self.buffer is not None:
            self.buffer.load_state_dict(state[_BUFFER_KEY])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Bundle metadata (as every task) and the replay buffer."""
        super().on_save_checkpoint(checkpoint)
        if self.buffer is not None:
            checkpoint[_BUFFER_KEY] = self.buffer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved replay buffer for the first step after resume."""
        state = checkpoint.get(_BUFFER_KEY)
        if state is not None:
            if self.buffer is not None:
                self.buffer.load_state_dict(state)
            else:
                self._buffer_state = state

    # ---- the bundle ---------------------------------------------------------------------
    def prepare_export(self, trainer: Any) -> None:
        """Energy quantiles of the validation images under the weights about to be exported."""
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "val_dataloader"):
            return
        was_training = self.training
        self.eval()
        energies = []
        with torch.inference_mode():
            for batch in dm.val_dataloader():
                batch = {k: v.to(self.device) if isinstance(v, Tensor) else v
                         for k, v in batch.items()}  # fmt: skip
                batch = dm.on_after_batch_transfer(batch, 0)
                x = self.inputs(batch)
                assert isinstance(x, Tensor)
                energies.append(self._reference_energies(self(x)).float().cpu())
        self.train(was_training)
        if not energies:
            return
        e = torch.cat(energies)
        e = e[torch.isfinite(e)]
        if not len(e):
            log.warning("JEM: no finite validation energy; the bundle has no energy reference")
            return
        if len(e) > 1_000_000:  # torch.quantile's limit is 16 M; a million is plenty
            e = e[torch.randperm(len(e), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        q = torch.quantile(e.double(), torch.tensor(ENERGY_QUANTILES, dtype=torch.float64))
        self.energy_reference = {"n": len(e), "mean": float(e.mean())} | {
            f"p{100 * a:g}": float(v) for a, v in zip(ENERGY_QUANTILES, q.tolist(), strict=True)
        }
        log.info(
            "JEM: validation energy median %.3g, 99.5th percentile %.3g (%d values)",
            self.energy_reference["p50"],
            self.energy_reference["p99.5"],
            len(e),
        )

    def bundle_meta(self, metrics: dict[str, Any] | None = None) -> Any:
        """The classifier's metadata plus ``extra["jem"]``: what makes the energy band."""
        meta = super().bundle_meta(metrics)
        jem: dict[str, Any] = {"energy": "-logsumexp(logits)"}
        if self.energy_reference:
            jem["energy_reference"] = dict(self.energy_reference)
        meta.extra["jem"] = jem
        return meta

    def energy(self, x: Tensor) -> Tensor:
        """``E(x)`` of normalised images (one per image): higher is less like the training data."""
        return self._tile_energy(self(x))


class JEMTask(_EnergyTerms, ClassificationTask):
    """A multiclass classifier trained as a Joint Energy-based Model.

    Takes every :class:`~landlearn.tasks.ClassificationTask` argument (``model`` defaults to
    ``wide_resnet``, WRN-10-2) and the JEM ones below.

    Args:
        pyx_weight: weight of the classifier's cross-entropy, p(y|x).
        px_weight: weight of the generative term, p(x).
        pxy_weight: weight of the class-conditional term, p(x|y) (0: off, as in JEM).
        sgld_steps: SGLD steps per training step (JEM: 20).
        sgld_step_size: step along −∇ₓE.
        sgld_noise: standard deviation of the added noise.
        buffer_size: samples in the replay buffer (JEM: 10,000).
        reinit: share of each drawn batch started afresh.
        init: ``uniform`` (U(−1, 1)) or ``gaussian`` (per-class diagonal Gaussian of the
            first 2,000 normalised training images).
        grad_clip: clamp each SGLD gradient element to ±this (None: off).
        sample_clip: clamp samples to ±this in normalised units (None: off).
        reg_r: weight α of REG_r, the mean squared energy of real samples.
        reg_u: weight of REG_u, the mean squared energy of SGLD samples.
        reg_g: weight of REG_g, the mean squared norm of ∇ₓE on real samples (a double
            backward pass: about 2× the cost of a step).
        unlabelled: feed the datamodule's unlabelled loader into p(x) (semi-supervised).
    """

    task: ClassVar[str] = "classification"

    def __init__(
        self,
        model: str = "wide_resnet",
        pyx_weight: float = 1.0,
        px_weight: float = 1.0,
        pxy_weight: float = 0.0,
        sgld_steps: int = 20,
        sgld_step_size: float = 1.0,
        sgld_noise: float = 0.01,
        buffer_size: int = 10000,
        reinit: float = 0.05,
        init: str = "uniform",
        grad_clip: float | None = None,
        sample_clip: float | None = None,
        reg_r: float = 0.0,
        reg_u: float = 0.0,
        reg_g: float = 0.0,
        unlabelled: bool = False,
        **kwargs: Any,
    ) -> None:
        """See the class docstring; the classifier's arguments are passed on."""
        _check_options("JEMTask", init, kwargs.get("mode"), sgld_steps, buffer_size)
        super().__init__(model, **kwargs)
        self.save_hyperparameters()
        self._init_energy_state()


class SegmentationJEMTask(_EnergyTerms, SegmentationTask):
    """A segmenter trained as a Joint Energy-based Model (per-pixel classes, one energy per tile).

    Takes every :class:`~landlearn.tasks.SegmentationTask` argument (``model`` defaults to
    ``wide_resnet_unet``, ``loss`` to CE + Dice, the founding study's p(y|x)) and the JEM ones of
    :class:`JEMTask` except ``pxy_weight`` (a class per pixel has no single p(x|y)).

    **The tile energy is the mean of the per-pixel energies** ``−logsumexp_k f(x)[k, i, j]``.
    The founding study summed them: a sum grows with the tile's pixel count, and so do its
    input gradient and the p(x) term, which is why its segmentation energies were ~4 orders of
    magnitude larger than the classifier's and diverged. With the mean, ``∂E/∂x`` at a pixel
    does not depend on how many pixels the tile has, so one SGLD step size works at 64 px and at
    256 px, the energy is on the classifier's scale (REG_r's α carries over), and real tiles of
    any size compare with the buffer's fixed-size samples.

    ``tile_energy: sum`` is the study's rule, kept to show the difference (RESULTS.md §9).

    Args:
        tile_energy: ``mean`` (default) or ``sum`` of the per-pixel energies.
        buffer_crop: side in px of the SGLD samples (the buffer holds
            ``buffer_size × C × buffer_crop²`` floats); the Gaussian restarts are fitted to
            random crops of this size from the training tiles.
        (the others): as :class:`JEMTask`.
    """

    task: ClassVar[str] = "segmentation"

    def __init__(
        self,
        model: str = "wide_resnet_unet",
        pyx_weight: float = 1.0,
        px_weight: float = 1.0,
        sgld_steps: int = 20,
        sgld_step_size: float = 1.0,
        sgld_noise: float = 0.01,
        buffer_size: int = 1000,
        buffer_crop: int = 64,
        tile_energy: str = "mean",
        reinit: float = 0.05,
        init: str = "uniform",
        grad_clip: float | None = None,
        sample_clip: float | None = None,
        reg_r: float = 0.0,
        reg_u: float = 0.0,
        reg_g: float = 0.0,
        unlabelled: bool = False,
        loss: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """See the class docstring; the segmenter's arguments are passed on."""
        _check_options("SegmentationJEMTask", init, kwargs.get("mode"), sgld_steps, buffer_size)
        if tile_energy not in ("mean", "sum"):
            raise LandlearnError(
                f"SegmentationJEMTask tile_energy must be mean or sum, got {tile_energy!r}"
            )
        if int(buffer_crop) < 8:
            raise LandlearnError(f"SegmentationJEMTask buffer_crop must be >= 8, got {buffer_crop}")
        loss = loss if loss is not None else {"ce": 0.5, "dice": 0.5}
        super().__init__(model, loss=loss, **kwargs)
        self.save_hyperparameters()
        self.hparams["pxy_weight"] = 0.0
        self._init_energy_state()

    def _tile_energy(self, logits: Tensor) -> Tensor:
        """The mean (or sum) over pixels of ``−logsumexp_k`` (the class docstring says why)."""
        e = energy(logits).flatten(1)
        return e.sum(1) if self.hparams["tile_energy"] == "sum" else e.mean(1)

    def _reference_energies(self, logits: Tensor) -> Tensor:
        """Per-pixel energies (what a map's energy band holds), at most 20,000 per batch."""
        e = energy(logits).flatten()
        if len(e) > 20000:
            e = e[torch.randperm(len(e), generator=torch.Generator().manual_seed(0))[:20000]]
        return e

    def _buffer_shape(self, like: Tensor) -> tuple[int, ...]:
        crop = int(self.hparams["buffer_crop"])
        return (int(like.shape[1]), crop, crop)

    def _gaussian_crop(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """A random ``buffer_crop`` crop of each tile; one Gaussian for all (labels 0)."""
        crop = int(self.hparams["buffer_crop"])
        h, w = x.shape[-2:]
        if h < crop or w < crop:
            raise LandlearnError(
                f"SegmentationJEMTask buffer_crop {crop} is larger than the tiles ({h}×{w})"
            )
        top = int(torch.randint(h - crop + 1, (1,)))
        left = int(torch.randint(w - crop + 1, (1,)))
        x = x[..., top : top + crop, left : left + crop]
        return x, torch.zeros(len(x), dtype=torch.long, device=y.device)
