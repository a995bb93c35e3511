r"""Contrastive self-supervised pre-training: SimCLR on one input, Dual-SimCLR on a sensor pair.

``ContrastiveTask`` learns encoders from unlabelled chips of any landlearn datamodule (labels,
if the batches have them, are ignored):

- ``simclr`` (Chen et al. 2020): one input; two random :class:`~landlearn.data.views.GeoViews`
  of each chip (or, with ``band_groups``, two views that see different bands) through one
  encoder and one projection head; the two views of a chip are the positive pair.
- ``dual_simclr`` (the founding study): two inputs on one grid (``s2``, ``s1``), one encoder and
  one projection head each; the co-located chips of the two sensors are the positive pair,
  every other chip of the batch (or of the memory bank) a negative. ``pair_views: true`` adds a
  random view of each sensor on top: ``pair_geometry: independent`` draws each sensor's
  crop, flip and turn apart (the pair is then also two views of the place), ``shared`` draws
  one geometry for both (the chips stay co-located pixel for pixel; brightness, contrast, band
  dropout and blur are still drawn per sensor).
  ``shared_encoder: true`` makes it the **date-vs-date** view: the two inputs are one sensor
  at two dates (``t0``, ``t1``, e.g. :func:`landlearn.data.stacks.ssl4eo_dates`), read by one
  encoder and one head, and the same place at another date is the positive (seasonal
  contrast, as SeCo, Mañas et al. 2021); the bundle holds that one encoder.

The loss is lightly's ``NTXentLoss`` (temperature :math:`\tau`) and the heads lightly's
``SimCLRProjectionHead`` (Linear → BN → ReLU → Linear); encoders are timm models without a
classifier (ResNet-18 / 50, ViT-small, any band count).

**Large effective batch: a memory bank**, lightly's (``memory_bank_size``, default 4,096): the
second view's projections of recent batches are kept as extra negatives, so a CPU batch of 64
contrasts against 4,096 chips. We chose it over gradient caching because gradient caching
(Gao et al. 2021) runs every chip through the encoder twice and holds all the batch's
representations, which doubles the cost of the forward pass on a CPU that already limits the
epoch; the bank costs one matrix product. Its entries come from slightly older encoders
(stale by up to ``size / batch`` steps), the trade MoCo makes too; ``memory_bank_size: 0``
falls back to in-batch negatives (the plain SimCLR loss). The bank is saved in checkpoints and
restored on resume. **Keep the bank smaller than an epoch's chips**: a bank that holds a whole
epoch holds earlier views of the batch's own chips as negatives, and on few scenes the loss
then climbs back toward chance as the encoder learns the places (:func:`bank_warning` says so
at the start of a fit).

The run's ``model.safetensors`` is an **encoder bundle** (:mod:`landlearn.bundle.encoder`): the
encoder(s) and the inputs' training statistics, which ``weights:`` of a classifier, a U-Net or
a fusion model loads (``freeze_encoder: true`` for a linear probe, ``encoder_lr`` to fine-tune
it slower than the head).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from landlearn.data.views import GeoViews, band_group_view
from landlearn.errors import LandlearnError
from landlearn.schema import InputSpec
from landlearn.tasks.base import LandlearnTask

log = logging.getLogger(__name__)

__all__ = ["METHODS", "PAIR_GEOMETRIES", "ContrastiveTask", "bank_warning", "nt_xent"]

METHODS = ("simclr", "dual_simclr")
PAIR_GEOMETRIES = ("independent", "shared")
_BANK_KEY = "landlearn_memory_bank"


def nt_xent(z0: Tensor, z1: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent of two ``(B, D)`` batches of projections, in-batch negatives (lightly's loss).

    Row ``i`` of ``z0`` and of ``z1`` is a positive pair; every other of the ``2B - 2``
    projections is a negative of both.
    """
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=temperature)(z0, z1)


class ContrastiveTask(LandlearnTask):
    """SimCLR / Dual-SimCLR pre-training of timm encoders (see the module docstring).

    Args:
        method: ``simclr`` (one input, two views) or ``dual_simclr`` (two inputs, one encoder
            each, the co-located pair as positive).
        encoder: timm model name of every encoder (``resnet18``, ``resnet50``,
            ``vit_small_patch16_224`` with ``encoder_kwargs: {img_size: 64}`` …).
        encoders: per input name, overriding ``encoder``.
        encoder_kwargs: extra ``timm.create_model`` arguments of every encoder.
        use_inputs: the batch keys to read (default: the datamodule's raster inputs: the first for
            ``simclr``, the first two for ``dual_simclr``).
        in_channels: bands per input (default: the data's).
        band_groups: ``simclr`` only: two lists of band indices; view 1 sees the first group,
            view 2 the second (the other bands set to 0).
        views: :class:`~landlearn.data.views.GeoViews` options (``{crop_scale: [0.5, 1]}``).
        pair_views: ``dual_simclr``: also draw a random view of each sensor.
        pair_geometry: with ``pair_views``: ``independent`` (each sensor its own crop, flip and
            turn) or ``shared`` (one geometry for the pair, intensity changes per sensor).
        shared_encoder: ``dual_simclr``: one encoder and head for both inputs (two dates of
            one sensor, same bands); the bundle holds it under the first input's name.
        temperature: NT-Xent temperature.
        projection_dim / hidden_dim: the projection head's output and hidden widths.
        memory_bank_size: projections kept as extra negatives; 0 turns the bank off.
        pretrained: start the encoders from timm's ImageNet weights (offline: an error).
        optimizer, lr, weight_decay, momentum, scheduler, scheduler_kwargs: as every task.
    """

    task: ClassVar[str] = "contrastive"
    default_monitor: ClassVar[str] = "train_loss"

    def __init__(
        self,
        method: str = "simclr",
        encoder: str = "resnet18",
        encoders: dict[str, str] | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        use_inputs: list[str] | None = None,
        in_channels: int | dict[str, int] | None = None,
        band_groups: list[list[int]] | None = None,
        views: dict[str, Any] | None = None,
        pair_views: bool = False,
        pair_geometry: str = "independent",
        shared_encoder: bool = False,
        temperature: float = 0.1,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        memory_bank_size: int = 4096,
        pretrained: bool = False,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str | None = "cosine",
        scheduler_kwargs: dict[str, Any] | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            from landlearn.registry import unknown_name

            raise unknown_name("contrastive method", method, METHODS)
        if band_groups is not None and (method != "simclr" or len(band_groups) != 2):
            raise LandlearnError("band_groups needs method: simclr and exactly two groups")
        if shared_encoder and method != "dual_simclr":
            raise LandlearnError("shared_encoder needs method: dual_simclr (two dates)")
        if pair_geometry not in PAIR_GEOMETRIES:
            from landlearn.registry import unknown_name

            raise unknown_name("pair_geometry", pair_geometry, PAIR_GEOMETRIES)
        if temperature <= 0:
            raise LandlearnError(f"temperature must be > 0, got {temperature}")
        if memory_bank_size < 0:
            raise LandlearnError(f"memory_bank_size must be >= 0, got {memory_bank_size}")
        self.save_hyperparameters()
        self._set_monitor(None)
        self.view_maker = GeoViews(**_view_options(views))
        self.encoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.input_specs: list[InputSpec] = []
        self.loss_fn: nn.Module | None = None
        self._bank: dict[str, Tensor] | None = None
        if in_channels is not None:
            self._build(self._channels_by_input(in_channels))

    # ---- construction -------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        """The inputs the encoders read, in order."""
        return list(self.hparams["use_inputs"] or []) or list(self.encoders)

    def _key(self, name: str) -> str:
        """The encoder / head that reads input ``name`` (the first input's, when shared)."""
        return next(iter(self.encoders)) if self.hparams.get("shared_encoder") else name

    def _wanted(self) -> int:
        return 2 if self.hparams["method"] == "dual_simclr" else 1

    def _channels_by_input(self, channels: int | Mapping[str, int]) -> dict[str, int]:
        names = list(self.hparams["use_inputs"] or [])
        if isinstance(channels, Mapping):
            chosen = names or list(channels)[: self._wanted()]
            missing = [n for n in chosen if n not in channels]
            if missing:
                raise LandlearnError(f"in_channels names no bands for input(s) {missing}")
            got = {n: int(channels[n]) for n in chosen}
        else:
            got = {(names or ["image"])[0]: int(channels)}
        if len(got) != self._wanted():
            raise LandlearnError(
                f"{self.hparams['method']} reads {self._wanted()} input(s), got {list(got)}"
            )
        return got

    def _build(self, channels: dict[str, int]) -> None:
        from lightly.models.modules import SimCLRProjectionHead

        from landlearn.models.branches import feature_width, raster_encoder

        hp = self.hparams
        chosen = dict(hp["encoders"] or {})
        unknown = sorted(set(chosen) - set(channels))
        if unknown:
            raise LandlearnError(f"encoders names {unknown}, not among the inputs {list(channels)}")
        self.encoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        built = dict(channels)
        if hp.get("shared_encoder"):
            if len(set(channels.values())) != 1:
                raise LandlearnError(
                    f"shared_encoder needs inputs of one band count, got {channels}"
                )
            built = dict(list(channels.items())[:1])
        for name, bands in built.items():
            net = raster_encoder(chosen.get(name, hp["encoder"]), bands, bool(hp["pretrained"]),
                                 **(hp["encoder_kwargs"] or {}))  # fmt: skip
            self.encoders[name] = net
            self.heads[name] = SimCLRProjectionHead(
                feature_width(net), int(hp["hidden_dim"]), int(hp["projection_dim"])
            )
        if hp["band_groups"] is not None:
            bands = next(iter(channels.values()))
            for group in hp["band_groups"]:
                band_group_view(torch.zeros(1, bands, 1, 1), group)  # checks the indices
        if hp.get("channels_last", True):
            self.encoders.to(memory_format=torch.channels_last)
        self.hparams["in_channels"] = dict(channels)
        self.hparams["use_inputs"] = list(channels)
        self.loss_fn = self._loss()

    def _loss(self) -> nn.Module:
        from lightly.loss import NTXentLoss

        size = int(self.hparams["memory_bank_size"])
        bank: int | tuple[int, int] = (size, int(self.hparams["projection_dim"])) if size else 0
        return NTXentLoss(temperature=float(self.hparams["temperature"]), memory_bank_size=bank)

    def setup(self, stage: str) -> None:
        """Inputs and band counts from the datamodule; build the encoders if not yet built."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            from landlearn.data.datamodules import datamodule_specs

            specs, _ = datamodule_specs(dm, getattr(dm, "task", "classification") or "segmentation")
            rasters = [s for s in specs if s.kind != "table"]
            names = list(self.hparams["use_inputs"] or [s.name for s in rasters][: self._wanted()])
            by_name = {s.name: s for s in rasters}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise LandlearnError(
                    f"ContrastiveTask reads input(s) {missing}; the data gives {sorted(by_name)}"
                )
            self.input_specs = [by_name[n] for n in names]
            data_channels = {s.name: len(s.bands) for s in self.input_specs}
            if self.encoders:
                if dict(self.hparams["in_channels"] or {}) != data_channels:
                    raise LandlearnError(
                        f"the encoders read {self.hparams['in_channels']} bands but the data "
                        f"has {data_channels}"
                    )
                return
            self._build(self._channels_by_input(data_channels))
        elif not self.encoders:
            raise LandlearnError("ContrastiveTask needs a datamodule or in_channels")

    # ---- the step -----------------------------------------------------------------------
    def embed(self, name: str, x: Tensor) -> Tensor:
        """Pooled encoder features ``(B, D)`` of input ``name`` (normalised units)."""
        if self.hparams.get("channels_last", True):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoders[self._key(name)](x)

    def _pair(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """The two projections whose rows are positives."""
        names = self.input_names
        missing = [n for n in names if n not in batch]
        if missing:
            raise LandlearnError(
                f"ContrastiveTask reads input {missing[0]!r} but the batch has keys {sorted(batch)}"
            )
        if self.hparams["method"] == "simclr":
            name = names[0]
            x = batch[name].float()
            v0 = self.view_maker({name: x})[name]
            v1 = self.view_maker({name: x})[name]
            groups = self.hparams["band_groups"]
            if groups is not None:
                v0, v1 = band_group_view(v0, groups[0]), band_group_view(v1, groups[1])
            head = self.heads[name]
            return head(self.embed(name, v0)), head(self.embed(name, v1))
        a, b = names
        xa, xb = batch[a].float(), batch[b].float()
        if self.hparams["pair_views"]:
            if self.hparams.get("pair_geometry", "independent") == "shared":
                views = self.view_maker({a: xa, b: xb})  # one geometry, intensity per sensor
                xa, xb = views[a], views[b]
            else:
                xa, xb = self.view_maker({a: xa})[a], self.view_maker({b: xb})[b]
        ha, hb = self.heads[self._key(a)], self.heads[self._key(b)]
        return ha(self.embed(a, xa)), hb(self.embed(b, xb))

    def _contrast(self, batch: Mapping[str, Any]) -> tuple[Tensor, int]:
        if self.loss_fn is None:
            raise RuntimeError("encoders not built; call setup() or pass in_channels")
        z0, z1 = self._pair(batch)
        return self.loss_fn(z0.float(), z1.float()), int(z0.shape[0])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """NT-Xent of the batch's positive pairs (the memory bank takes the second view)."""
        loss, n = self._contrast(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The loss on validation chips (the bank is read, not updated: no gradient)."""
        loss, n = self._contrast(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=n)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The loss on test chips."""
        loss, n = self._contrast(batch)
        self.log("test_loss", loss, on_epoch=True, batch_size=n)

    # ---- checkpoints: the memory bank ---------------------------------------------------
    def _bank_module(self) -> Any:
        return getattr(self.loss_fn, "memory_bank", None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the memory bank (lightly's buffers are not in the state dict)."""
        bank = self._bank_module()
        if bank is not None and bank.size[0] > 0:
            checkpoint[_BANK_KEY] = {"bank": bank.bank.cpu(), "ptr": bank.bank_ptr.cpu()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the memory bank once the encoders exist (``configure_model`` / setup)."""
        self._bank = checkpoint.get(_BANK_KEY)

    def on_fit_start(self) -> None:
        """Put a resumed run's memory bank back; warn when the bank outgrows an epoch."""
        super().on_fit_start()
        self.restore_bank()
        dm = getattr(self.trainer, "datamodule", None)
        bank_warning(int(self.hparams["memory_bank_size"]), getattr(dm, "train_dataset", None))

    def restore_bank(self) -> None:
        """Copy a loaded checkpoint's memory bank into the loss (once)."""
        bank = self._bank_module()
        if self._bank is not None and bank is not None and bank.size[0] > 0:
            bank.bank.copy_(self._bank["bank"].to(bank.bank.device))
            bank.bank_ptr.copy_(self._bank["ptr"].to(bank.bank_ptr.device))
            self._bank = None

    # ---- export -------------------------------------------------------------------------
    def encoder_meta(self, metrics: dict[str, Any] | None = None) -> Any:
        """The encoder bundle's :class:`~landlearn.bundle.encoder.EncoderMeta`."""
        from landlearn.bundle.encoder import EncoderMeta

        hp = self.hparams
        names = dict(hp["encoders"] or {})
        options = {k: hp.get(k) for k in ("temperature", "projection_dim", "hidden_dim",
                                      "memory_bank_size", "band_groups", "pair_views",
                                      "pair_geometry", "views",
                                      "shared_encoder",
                                      "encoder_kwargs", "lr", "optimizer")}  # fmt: skip
        trainer = self._trainer
        if trainer is not None:
            options["epochs"] = int(trainer.current_epoch)
        return EncoderMeta(
            method=str(hp["method"]),
            encoders={n: names.get(n, hp["encoder"]) for n in self.encoders},
            inputs=[s for s in self.input_specs if s.name in self.encoders],
            options=options,
            metrics=dict(metrics or {}),
        )

    def export_bundle(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the encoder bundle (the run's ``model.safetensors``)."""
        from landlearn.bundle.encoder import save_encoder_bundle

        trainer = self._trainer
        if trainer is not None and not metrics:
            loss = trainer.callback_metrics.get("train_loss")
            metrics = {"train_loss": float(loss)} if loss is not None else {}
        encoders = {n: m for n, m in self.encoders.items()}
        return save_encoder_bundle(path, encoders, self.encoder_meta(metrics))


def bank_warning(size: int, train_data: Any) -> str | None:
    """Warn (and return the line) when a memory bank of ``size`` holds an epoch's chips or more.

    The bank then always holds earlier views of the very chips of the batch (and, with few
    scenes, overlapping crops of the same places) as *negatives*: the better the encoder learns
    a place, the harder those false negatives get, and the loss can climb back toward chance.
    That is our reading of the Dual-SimCLR runs of ``benchmarks/RESULTS.md`` §14.3: with a bank
    of 1,024 and 732 chips per epoch the loss climbed from epoch 5 on; without the bank it fell
    every epoch.
    """
    try:
        chips = len(train_data)
    except TypeError:
        return None
    if size <= 0 or chips <= 0 or size < chips:
        return None
    line = (
        f"memory_bank_size {size} >= the {chips} training chips of an epoch: the bank holds "
        "earlier views of the same chips as negatives and the loss can climb back toward "
        "chance; use a bank smaller than an epoch (or memory_bank_size: 0)"
    )
    log.warning(line)
    return line


def _view_options(views: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = dict(views or {})
    for key in ("crop_scale", "crop_ratio", "blur_sigma"):
        if key in opts:
            value = opts[key]
            if not isinstance(value, Sequence) or len(value) != 2:
                raise LandlearnError(f"views: {key} is a [low, high] pair, got {value!r}")
            opts[key] = (float(value[0]), float(value[1]))
    allowed = set(GeoViews.__dataclass_fields__)
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise LandlearnError(f"views: unknown option(s) {unknown}; known: {sorted(allowed)}")
    return opts
