r"""Tasks: the slim base for the craft, and the supervised task over named inputs and heads.

``LandlearnTask`` is what every landlearn LightningModule shares: the optimiser and schedule by
name, the monitored metric, the bf16 warning. ``SupervisedTask`` trains one model on labelled
batches described by the datamodule's ``InputSpec`` / ``HeadSpec`` lists
(:func:`landlearn.data.datamodules.datamodule_specs`): each input is read from the batch by its
spec name (``image`` for TorchGeo's datamodules; ``s2``, ``s1`` for an aligned two-sensor one),
each head's target by its ``target_key``, with one loss and one metric collection per head
(``nn.ModuleDict``\\s keyed by head name). Like TorchGeo's trainers it builds in three hooks,
called from ``setup`` once the data facts are known: :meth:`~SupervisedTask.configure_models`,
:meth:`~SupervisedTask.configure_losses`, :meth:`~SupervisedTask.configure_metrics`.

``num_classes`` and ``in_channels`` may be left out of a config: they are read from the
datamodule in ``setup``. A multi-input model (``landlearn.models.is_multi_input``) is built
with ``in_channels`` per input and called with a dict of the normalised inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from landlearn.bundle import BundleMeta
from landlearn.colors import default_colors
from landlearn.conventions import IGNORE_INDEX
from landlearn.d4 import d4_mean, tta_transforms
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec
from landlearn.tasks.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

__all__ = ["LandlearnTask", "SupervisedTask", "cpu_has_native_bf16"]

_META_KEY = "landlearn_bundle_meta"
_RGB_ALIASES = (("red", "b04", "b4"), ("green", "b03", "b3"), ("blue", "b02", "b2"))

Inputs = torch.Tensor | dict[str, torch.Tensor]
"""What a model reads: one tensor, or ``{input name: tensor}`` for a multi-input model."""


class LandlearnTask(pl.LightningModule):
    """The craft every landlearn task shares: optimiser, schedule, monitor, precision check.

    Subclasses call ``save_hyperparameters`` with at least ``optimizer``, ``lr``,
    ``weight_decay``, ``momentum``, ``scheduler`` and ``scheduler_kwargs``, and set
    ``self.monitor`` (:meth:`_set_monitor`).
    """

    task: ClassVar[str] = ""
    default_monitor: ClassVar[str] = ""
    monitor: str = ""
    monitor_mode: str = "max"

    def _set_monitor(self, monitor: str | None) -> None:
        """The metric for the best checkpoint, early stopping and ``plateau`` (min for losses)."""
        self.monitor = monitor or self.default_monitor
        lower = ("loss", "mae", "rmse", "nll")
        self.monitor_mode = "min" if self.monitor.endswith(lower) else "max"

    def on_fit_start(self) -> None:
        """Warn when bf16 autocast would run emulated (much slower) on this CPU."""
        precision = str(getattr(self.trainer, "precision", ""))
        if "bf16" in precision and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "trainer.precision %s on a CPU without native bf16 (%s, no AVX512-BF16 / AMX): "
                "bf16 is emulated here and trains several times slower than fp32; "
                "use trainer.precision: 32-true",
                precision,
                torch.backends.cpu.get_cpu_capability(),
            )

    def configure_optimizers(self) -> Any:
        """Optimiser and schedule from the hyper-parameters."""
        return self._optimizers_for(self.parameters())

    def _optimizers_for(self, params: Any) -> Any:
        """Optimiser and schedule over ``params`` (parameters, or parameter groups)."""
        hp = self.hparams
        opt = build_optimizer(
            params,
            hp["optimizer"],
            lr=float(hp["lr"]),
            weight_decay=float(hp["weight_decay"]),
            momentum=float(hp["momentum"]),
        )
        trainer = self._trainer
        max_epochs = 1  # no trainer yet (lr-find before fit)
        if trainer is not None:  # -1: bounded by max_steps alone (the schedules see it)
            max_epochs = -1 if trainer.max_epochs is None else int(trainer.max_epochs)
        try:
            total = int(trainer.estimated_stepping_batches) if trainer is not None else 100
        except Exception:  # no dataloader yet (e.g. lr-find before fit); a safe fallback
            total = 100
        sched = build_scheduler(
            opt,
            hp["scheduler"],
            lr=float(hp["lr"]),
            max_epochs=max_epochs,
            total_steps=max(1, total),
            monitor=self.monitor,
            monitor_mode=self.monitor_mode,
            **(hp["scheduler_kwargs"] or {}),
        )
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}


class SupervisedTask(LandlearnTask):
    """One model, named inputs, one loss and one metric collection per head.

    Base of ``ClassificationTask``, ``SegmentationTask`` and ``RegressionTask``; a subclass sets
    ``task`` (the head kind it trains), ``target_key`` (the target's sample key when the data
    names no heads) and ``default_monitor``, and may override the three ``configure_*`` hooks.
    """

    task: ClassVar[str] = ""
    target_key: ClassVar[str] = ""
    default_monitor: ClassVar[str] = ""

    def __init__(
        self,
        model: str,
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        in_channels: int | dict[str, int] | None = None,
        loss: str | dict[str, Any] = "ce",
        class_weights: bool = False,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        dropout: float = 0.0,
        monitor: str | None = None,
        patience: int = 0,
        class_names: list[str] | None = None,
        mode: str = "multiclass",
        ignore_index: int = IGNORE_INDEX,
        num_examples: int = 8,
        channels_last: bool = True,
        tta: str | None = None,
        weights: bool | str | None = None,
        freeze_encoder: bool = False,
        encoder_lr: float | None = None,
    ) -> None:
        """Build the task from names; the models and losses come from the registries.

        Args:
            model: registered model name (``landlearn.models.list_models()``).
            model_kwargs: extra builder arguments, e.g. ``{"encoder": "resnet34"}``.
            num_classes: classes (class heads) or targets (regression heads); default: the data's.
            in_channels: bands; ``{input name: bands}`` for a multi-input model; default: the
                data's.
            loss: a loss name, or weights of a sum: ``{"ce": 0.5, "dice": 0.5}``.
            class_weights: weight the loss by inverse class frequency of the training split.
            scheduler: ``step``, ``cosine``, ``cyclic``, ``onecycle``, ``plateau`` or None.
            monitor: metric for the best checkpoint and early stopping (default per task).
            patience: early-stopping patience in epochs; 0 turns it off.
            channels_last: keep convolution weights and images in NHWC memory order, which the
                CPU (oneDNN) and GPU (cuDNN) kernels run faster. On a 2-core EPYC, a U-Net
                ResNet-18 training step on 256x256 chips is 1.3x faster in fp32 and 1.25-1.4x
                under bf16 autocast; a ResNet-18 on 64x64 chips gains 1.04-1.12x
                (benchmarks/train_step.py).
            tta: ``"d4"`` tests and predicts with the probabilities averaged over the 8 flips /
                quarter turns of each image (8x the inference; validation stays plain).
            weights: where the model starts: ``false`` (fresh), ``true`` (the library's pretrained
                weights, as ``pretrained: true``; offline they are an error), or the path of a
                landlearn bundle or encoder bundle, whose tensors that match by name and shape are
                loaded (``landlearn.models.weights``; what was loaded and what was left is logged).
                Default: ``pretrained``.
            freeze_encoder: linear probe: the encoder (``landlearn.models.weights
                .encoder_modules``: all but the head) gets no gradient and keeps its batch-norm
                statistics (eval mode); only the head trains.
            encoder_lr: fine-tune the encoder at this learning rate and the rest at ``lr``
                (two parameter groups; ``onecycle`` gives both its one ``max_lr``).
        """
        super().__init__()
        _check_model(model)
        self._check_loss(loss)
        tta_transforms(tta)  # an unknown name fails here, not after training
        self.save_hyperparameters()
        self._set_monitor(monitor)
        self.model: nn.Module | None = None
        self.losses = nn.ModuleDict()
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        self.input_specs: list[InputSpec] = []
        self.head_specs: list[HeadSpec] = []
        self.data_info: dict[str, Any] = {}
        self.test_results: dict[str, Any] | None = None
        self.test_examples: dict[str, list[np.ndarray]] = {}
        if num_classes is not None and in_channels is not None:
            self._build(num_classes, in_channels)

    @classmethod
    def _check_loss(cls, loss: str | dict[str, Any]) -> None:
        """Refuse an unknown loss name (a class loss here; regression tasks override)."""
        _check_class_loss(loss)

    # ---- names --------------------------------------------------------------------------
    @property
    def is_multilabel(self) -> bool:
        """Multi-label classification (sigmoid per class)."""
        return self.hparams["mode"] == "multilabel"

    @property
    def is_multi_input(self) -> bool:
        """Whether the model reads a dict of named inputs."""
        from landlearn.models import is_multi_input

        return is_multi_input(self.hparams["model"])

    @property
    def out_channels(self) -> int:
        """Number of model outputs: one logit for binary, else one per class."""
        k = int(self.hparams["num_classes"])
        return 1 if self.hparams["mode"] == "binary" else k

    @property
    def input_names(self) -> list[str]:
        """Sample keys of the inputs, in model order (``image`` until the data says more)."""
        if self.input_specs:
            return [s.name for s in self.input_specs]
        channels = self.hparams["in_channels"]
        return list(channels) if isinstance(channels, Mapping) else ["image"]

    @property
    def head_names(self) -> list[str]:
        """Head names, in model order (the task's kind until the data names its heads)."""
        return [h.name for h in self.head_specs] or [self.task]

    def _target_key(self, head: str) -> str:
        spec = next((h for h in self.head_specs if h.name == head), None)
        return spec.target_key if spec is not None else self.target_key

    def model_tasks(self) -> tuple[str, ...]:
        """What the model must predict (``landlearn.models.model_task``): the task's kind."""
        return (self.task,)

    # ---- the three hooks ----------------------------------------------------------------
    def configure_models(self) -> None:
        """Build ``self.model`` from the hyper-parameters (``num_classes`` / ``in_channels``)."""
        from landlearn.models import build_model, model_task

        name = self.hparams["model"]
        wanted = self.model_tasks()
        if model_task(name) not in wanted:
            raise LandlearnError(
                f"model {name!r} is a {model_task(name)} model; {type(self).__name__} needs a "
                f"{' or '.join(wanted)} model"
            )
        weights = self.hparams.get("weights")
        pretrained = weights if isinstance(weights, bool) else bool(self.hparams["pretrained"])
        if isinstance(weights, str):
            pretrained = False
        self._fill_tables(name)
        self.model = build_model(
            name,
            in_channels=self._in_channels(),
            num_classes=self.out_channels,
            pretrained=pretrained,
            dropout=float(self.hparams["dropout"]),
            **(self.hparams["model_kwargs"] or {}),
        )
        if isinstance(weights, str):
            from landlearn.models.weights import load_matching_weights

            load_matching_weights(self.model, weights, inputs=self.input_names)
        if self.hparams.get("freeze_encoder"):
            for p in self._encoder_parameters():
                p.requires_grad_(False)
        if self.hparams.get("channels_last", True):
            self.model.to(memory_format=torch.channels_last)

    def _encoder_parameters(self) -> list[nn.Parameter]:
        from landlearn.models.weights import encoder_modules

        assert self.model is not None
        return [p for m in encoder_modules(self.model) for p in m.parameters()]

    def configure_optimizers(self) -> Any:
        """The base's optimiser; with ``encoder_lr`` the encoder in a group of its own.

        Frozen parameters (``freeze_encoder``) are left out of the optimiser, so weight decay
        cannot move them either.
        """
        encoder_lr = self.hparams.get("encoder_lr")
        frozen = bool(self.hparams.get("freeze_encoder"))
        if encoder_lr is None and not frozen:
            return super().configure_optimizers()
        enc = {id(p) for p in self._encoder_parameters()}
        rest = [p for p in self.parameters() if id(p) not in enc and p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if not frozen and encoder_lr is not None:
            encoder = [p for p in self.parameters() if id(p) in enc and p.requires_grad]
            groups.append({"params": encoder, "lr": float(encoder_lr)})
        return self._optimizers_for(groups)

    def on_train_epoch_start(self) -> None:
        """Linear probe: the frozen encoder stays in eval mode (its batch-norm statistics kept)."""
        if self.hparams.get("freeze_encoder") and self.model is not None:
            from landlearn.models.weights import encoder_modules

            for module in encoder_modules(self.model):
                module.eval()

    def _fill_tables(self, name: str) -> None:
        """Give a fusion builder that takes ``tables`` the data's table inputs.

        Written into ``model_kwargs`` so the checkpoint and the bundle rebuild the same model.
        """
        from landlearn.models.registry import builder_signature

        kwargs = dict(self.hparams["model_kwargs"] or {})
        tables = [s.name for s in self.input_specs if s.kind == "table"]
        if not tables or "tables" in kwargs or not self.is_multi_input:
            return
        if "tables" not in builder_signature(name).parameters:
            raise LandlearnError(
                f"model {name!r} does not read tables; the data gives table inputs {tables} "
                "(use late_fusion, gated_fusion, progressive_fusion or early_fusion)"
            )
        self.hparams["model_kwargs"] = {**kwargs, "tables": tables}

    def configure_losses(self, datamodule: Any = None) -> None:
        """One loss per head in ``self.losses``; ``class_weights`` from the datamodule."""
        from landlearn.losses import build_loss

        weights = None
        if self.hparams["class_weights"]:
            dm = datamodule
            weights = getattr(dm, "class_weights", None) if dm is not None else None
            if weights is None:
                raise LandlearnError(
                    "class_weights: true needs a datamodule with class_weights (landlearn's own)"
                )
            weights = torch.as_tensor(weights, dtype=torch.float32)
        loss = build_loss(
            self.hparams["loss"],
            num_classes=int(self.hparams["num_classes"]),
            ignore_index=int(self.hparams["ignore_index"]),
            class_weights=weights,
            mode=self.hparams["mode"],
        )
        self.losses = nn.ModuleDict({self.head_names[0]: loss})

    def configure_metrics(self) -> None:
        """Validation and test metric collections per head."""
        from landlearn.metrics import LandCoverMetrics

        k = int(self.hparams["num_classes"])
        mode = "multiclass" if self.hparams["mode"] == "binary" else self.hparams["mode"]
        kw = {"task": self.task, "mode": mode, "ignore_index": self.hparams["ignore_index"]}
        head = self.head_names[0]
        self.val_metrics = nn.ModuleDict({head: LandCoverMetrics(k, **kw)})
        self.test_metrics = nn.ModuleDict({head: LandCoverMetrics(k, **kw)})

    # ---- construction -------------------------------------------------------------------
    def _in_channels(self) -> int | dict[str, int]:
        channels = self.hparams["in_channels"]
        if self.is_multi_input:
            if not isinstance(channels, Mapping):
                raise LandlearnError(
                    f"model {self.hparams['model']!r} reads several inputs: in_channels is "
                    f"bands per input, e.g. {{s2: 13, s1: 2}}, got {channels!r}"
                )
            return {str(k): int(v) for k, v in channels.items()}
        if isinstance(channels, Mapping):
            if len(channels) != 1:
                raise LandlearnError(
                    f"model {self.hparams['model']!r} reads one input but in_channels names "
                    f"{len(channels)} ({', '.join(channels)}); use a multi-input model such as "
                    "early_fusion_unet"
                )
            return int(next(iter(channels.values())))
        return int(channels)

    def _build(self, num_classes: int, in_channels: int | Mapping[str, int]) -> None:
        self.hparams["num_classes"] = int(num_classes)
        self.hparams["in_channels"] = (
            {str(k): int(v) for k, v in in_channels.items()}
            if isinstance(in_channels, Mapping)
            else int(in_channels)
        )
        self.configure_models()
        self.configure_metrics()

    def setup(self, stage: str) -> None:
        """Read inputs, heads, classes and statistics from the datamodule; build what is missing."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            from landlearn.data.datamodules import datamodule_specs

            self.input_specs, self.head_specs = datamodule_specs(dm, self.task)
            info = _data_info(dm, self.input_specs, self.head_specs)
            self.data_info = {**info, **{k: v for k, v in self.data_info.items() if v}}
        self._check_classes(dm)
        _match_logged_hparam(self, dm, "class_names")
        data_channels = self._data_channels()
        if dm is not None and data_channels:
            self._check_channels(data_channels)
        if self.model is None:
            names = self.hparams["class_names"]
            k = self.hparams["num_classes"] or (len(names) if names else None)
            c = self.hparams["in_channels"] or data_channels
            if not k or not c:
                raise LandlearnError(
                    "num_classes / in_channels unknown: set model.init_args.num_classes and "
                    "in_channels, or use a datamodule that names its classes and bands"
                )
            self._build(int(k), c)
        elif not self.val_metrics:
            self.configure_metrics()
        if not self.losses:
            self.configure_losses(dm)

    def _check_classes(self, dm: Any) -> None:
        data_names = list(self.data_info.get("class_names") or [])
        given = self.hparams["class_names"]
        if given and data_names and list(given) != data_names:
            raise LandlearnError(
                f"the model's class_names {list(given)} differ from the data's {data_names}; "
                "give them in one place"
            )
        if not given and data_names:
            self.hparams["class_names"] = data_names
        names = self.hparams["class_names"]
        if dm is not None and names and self.hparams["num_classes"]:
            if int(self.hparams["num_classes"]) != len(names):
                raise LandlearnError(
                    f"num_classes={self.hparams['num_classes']} but the data names {len(names)} "
                    f"classes ({', '.join(names[:12])})"
                )

    def _data_channels(self) -> int | dict[str, int] | None:
        """Bands the data gives: per input for a multi-input model, else the one input's."""
        rasters = [s for s in self.input_specs if s.num_bands]
        if not rasters:
            bands = self.data_info.get("band_names") or []
            return len(bands) or None
        if self.is_multi_input:
            return {s.name: int(s.num_bands) for s in rasters}
        if len(rasters) > 1:
            raise LandlearnError(
                f"model {self.hparams['model']!r} reads one input but the data gives "
                f"{len(rasters)} ({', '.join(s.name for s in rasters)}); use a multi-input model "
                "such as early_fusion_unet, or give the datamodule one input"
            )
        return int(rasters[0].num_bands)

    def _check_channels(self, data: int | dict[str, int]) -> None:
        want = self.hparams["in_channels"]
        if not want:
            return
        if isinstance(data, dict):
            if not isinstance(want, Mapping) or dict(want) != data:
                raise LandlearnError(
                    f"the model expects in_channels={want} but the data has {data}; fix "
                    "in_channels or the data's inputs"
                )
            return
        if isinstance(want, Mapping) or int(want) != data:
            bands = [b for s in self.input_specs for b in s.bands] or list(
                self.data_info.get("band_names") or []
            )
            raise LandlearnError(
                f"the model expects in_channels={want} but the data has {data} bands "
                f"({', '.join(bands[:13])}); fix in_channels or the data's bands"
            )

    # ---- forward and steps --------------------------------------------------------------
    def forward(self, x: Inputs) -> Any:
        """Model output (logits) for one tensor, or a dict of named inputs."""
        if self.model is None:
            raise RuntimeError("model not built; call setup() or pass num_classes/in_channels")
        channels_last = self.hparams.get("channels_last", True)
        if isinstance(x, Mapping):
            x = {k: _memory_format(v, channels_last) for k, v in x.items()}
        else:
            x = _memory_format(x, channels_last)
        return self.model(x)

    def inputs(self, batch: Mapping[str, Any]) -> Inputs:
        """What the model reads from ``batch``: the input tensor, or the dict of named inputs.

        Raises:
            LandlearnError: an input the model reads is not in the batch.
        """
        names = self.input_names
        missing = [n for n in names if n not in batch]
        if missing:
            raise LandlearnError(
                f"{type(self).__name__} reads input {missing[0]!r} but the batch has keys "
                f"{sorted(batch)}"
            )
        if self.is_multi_input:
            return {n: batch[n] for n in names}
        return batch[names[0]]

    def outputs(self, x: Inputs) -> dict[str, torch.Tensor]:
        """Model output per head name."""
        out = self(x)
        if isinstance(out, Mapping):
            return dict(out)
        return {self.head_names[0]: out}

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities; binary single-logit outputs become two columns."""
        if self.is_multilabel:
            return torch.sigmoid(logits.float())
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits.float())
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits.float(), dim=1)

    def _target(self, batch: dict[str, Any], head: str | None = None) -> torch.Tensor:
        key = self._target_key(head or self.head_names[0])
        if key not in batch:
            raise LandlearnError(
                f"{type(self).__name__} needs batches with {key!r}; got keys {sorted(batch)}"
            )
        return batch[key]

    @staticmethod
    def _batch_size(x: Inputs) -> int:
        first = next(iter(x.values())) if isinstance(x, Mapping) else x
        return int(first.shape[0])

    def _step(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], Inputs]:
        """Total loss (sum over heads), outputs and targets per head, and the inputs."""
        x = self.inputs(batch)
        out = self.outputs(x)
        if not self.losses:
            self.configure_losses(None)
        targets = {head: self._target(batch, head) for head in out}
        total = sum(
            (self.losses[head](out[head], targets[head]) for head in out),
            start=torch.zeros((), device=next(iter(out.values())).device),
        )
        return total, out, targets, x

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        loss, _, _, x = self._step(batch)
        bs = self._batch_size(x)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metric updates on the validation split."""
        loss, out, y, x = self._step(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=self._batch_size(x))
        for head, logits in out.items():
            self._update_metrics(_metric(self.val_metrics, head), head, logits.detach(), y[head])

    def _update_metrics(
        self, metrics: Metric, head: str, output: torch.Tensor, target: torch.Tensor
    ) -> None:
        metrics.update(self.probs(output), target)

    def on_validation_epoch_end(self) -> None:
        """Log the validation summary metrics."""
        for head in self.val_metrics:
            metrics = _metric(self.val_metrics, head)
            self._log_summary("val", metrics.compute(), head)
            metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss, metrics and a few examples for the report."""
        loss, out, y, x = self._step(batch)
        self.log("test_loss", loss, on_epoch=True, batch_size=self._batch_size(x))
        head = self.head_names[0]
        if self.hparams.get("tta"):
            probs = self._tta_probs(x)
        else:
            probs = self.probs(out[head])
        probs = probs.detach()
        _metric(self.test_metrics, head).update(probs, y[head])
        self._keep_examples(x, y[head], probs)

    def on_test_epoch_start(self) -> None:
        """Start a fresh set of examples."""
        self.test_examples = {}

    def on_test_epoch_end(self) -> None:
        """Full test metrics (kept in ``test_results`` for metrics.json and the bundle)."""
        head = self.head_names[0]
        metrics = _metric(self.test_metrics, head)
        results = metrics.compute()
        metrics.reset()
        results["class_names"] = self.class_names
        if self.hparams.get("tta"):
            results["tta"] = self.hparams["tta"]
        self.test_results = results
        self._log_summary("test", results, head)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Class probabilities (averaged over the ``tta`` transforms when set)."""
        x = self.inputs(batch)
        if self.hparams.get("tta"):
            return self._tta_probs(x)
        return self.probs(self.outputs(x)[self.head_names[0]])

    def _tta_probs(self, x: Inputs) -> torch.Tensor:
        """Probabilities averaged over the ``tta`` transforms, maps turned back."""
        spatial = self.task == "segmentation"
        head = self.head_names[0]
        return d4_mean(
            lambda t: self.probs(self.outputs(t)[head]), x, spatial=spatial, tta=self.hparams["tta"]
        )

    def _log_summary(self, stage: str, m: dict[str, Any], head: str | None = None) -> None:
        keys = ("overall_accuracy", "average_accuracy", "miou", "macro_f1", "kappa", "ece", "auroc")
        short = {"overall_accuracy": "oa", "average_accuracy": "aa", "macro_f1": "f1"}
        prefix = stage if len(self.head_names) == 1 or head is None else f"{stage}_{head}"
        for key in keys:
            value = m.get(key)
            if value is None or (self.task == "classification" and key == "miou"):
                continue
            name = f"{prefix}_{short.get(key, key)}"
            self.log(name, float(value), prog_bar=key in ("overall_accuracy", "miou"))

    # ---- examples and bundle metadata ---------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Class names from the config, else the datamodule, else ``class_<k>``."""
        names = self.hparams["class_names"] or self.data_info.get("class_names")
        k = int(self.hparams["num_classes"] or 0)
        if names and len(names) == k:
            return list(names)
        return [f"class_{i}" for i in range(k)]

    def _example_input(self, x: Inputs) -> tuple[torch.Tensor, list[str]] | None:
        """The raster the report shows.

        The raster the report shows: the first input with red, green and blue bands, else
        the first input, with its band names.
        """
        if not isinstance(x, Mapping):
            return x, [n.lower() for n in self.data_info.get("band_names") or []]
        specs = {s.name: s for s in self.input_specs}
        fallback: tuple[torch.Tensor, list[str]] | None = None
        for name, tensor in x.items():
            if tensor.ndim != 4:  # a table input has no picture
                continue
            bands = [b.lower() for b in specs[name].bands] if name in specs else []
            if fallback is None:
                fallback = (tensor, bands)
            if all(any(b in aliases for b in bands) for aliases in _RGB_ALIASES):
                return tensor, bands
        return fallback

    @staticmethod
    def _rgb_bands(names: list[str], c: int) -> list[int]:
        picked = []
        for aliases in _RGB_ALIASES:
            hit = next((i for i, n in enumerate(names) if n in aliases), None)
            picked.append(hit)
        if all(p is not None for p in picked):
            return [int(p) for p in picked if p is not None]
        return [0, 1, 2] if c >= 3 else [0, 0, 0]

    def _keep_examples(self, x: Inputs, y: torch.Tensor, probs: torch.Tensor) -> None:
        picked = self._example_input(x)
        if picked is None:  # tables only: nothing to show
            return
        image, names = picked
        have = len(self.test_examples.get("image", []))
        n = min(int(self.hparams["num_examples"]) - have, image.shape[0])
        if n <= 0:
            return
        rgb = image[:n, self._rgb_bands(names, image.shape[1])].detach().float().cpu().numpy()
        lo = np.nanpercentile(rgb, 2, axis=(1, 2, 3), keepdims=True)
        hi = np.nanpercentile(rgb, 98, axis=(1, 2, 3), keepdims=True)
        img = np.clip((rgb - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
        img = (np.nan_to_num(img) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        conf, pred = probs[:n].max(dim=1)
        ex = self.test_examples
        ex.setdefault("image", []).extend(img)
        ex.setdefault("target", []).extend(y[:n].detach().cpu().numpy())
        ex.setdefault("pred", []).extend(pred.cpu().numpy())
        ex.setdefault("confidence", []).extend(conf.float().cpu().numpy())

    def bundle_meta(self, metrics: dict[str, Any] | None = None) -> BundleMeta:
        """Everything the bundle needs to rebuild and apply this model.

        The inputs and heads are the task's ``input_specs`` / ``head_specs`` (with training
        statistics) when it has them, else one ``image`` input and one head from ``data_info``.
        """
        input_specs = getattr(self, "input_specs", None)
        head_specs = getattr(self, "head_specs", None)
        if input_specs and head_specs:
            from landlearn.bundle import meta_from_specs

            extra = dict(self.hparams["model_kwargs"] or {})
            extra["dropout"] = float(self.hparams["dropout"])
            return meta_from_specs(
                input_specs,
                head_specs,
                model=self.hparams["model"],
                model_kwargs=extra,
                mode=self.hparams["mode"],
                chip_size=self.data_info.get("chip_size"),
                metrics=metrics,
            )
        info = self.data_info
        k = int(self.hparams["num_classes"])
        channels = self.hparams["in_channels"]
        c = sum(channels.values()) if isinstance(channels, Mapping) else int(channels)
        kwargs = dict(self.hparams["model_kwargs"] or {})
        kwargs["dropout"] = float(self.hparams["dropout"])
        kwargs["num_classes"] = self.out_channels
        kwargs["in_channels"] = dict(channels) if isinstance(channels, Mapping) else c
        colors = info.get("class_colors") or default_colors(k)
        bands = list(info.get("band_names") or [f"B{i + 1}" for i in range(c)])
        mean_given, std_given = info.get("mean"), info.get("std")
        if isinstance(channels, Mapping) and len(self.input_specs) > 1:  # inputs in model order
            bands = [f"{s.name}:{b}" for s in self.input_specs for b in s.bands]
            mean_given = [v for s in self.input_specs for v in s.mean or [0.0] * s.num_bands]
            std_given = [v for s in self.input_specs for v in s.std or [1.0] * s.num_bands]
        mean = [float(v) for v in (mean_given if mean_given is not None else [0.0] * c)]
        std = [float(v) for v in (std_given if std_given is not None else [1.0] * c)]
        return BundleMeta(
            task=self.task,
            mode=self.hparams["mode"],
            model_name=self.hparams["model"],
            model_kwargs=kwargs,
            band_names=bands,
            mean=mean,
            std=std,
            class_names=self.class_names,
            class_colors=[list(map(int, col)) for col in colors][:k],
            ignore_index=int(self.hparams["ignore_index"]),
            chip_size=int(info.get("chip_size") or 256),
            metrics=metrics or {},
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the bundle metadata as JSON so ``load_bundle(x.ckpt)`` needs no pickles."""
        if self.model is not None:
            checkpoint[_META_KEY] = self.bundle_meta().to_json()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), per oneDNN.

    Elsewhere (AVX2-only CPUs) torch emulates bf16 and a ResNet-18 training step under bf16
    autocast is several times slower than fp32 (benchmarks/RESULTS.md, section 4).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def _data_info(dm: Any, inputs: list[InputSpec], heads: list[HeadSpec]) -> dict[str, Any]:
    """The first input's and first head's facts for the bundle (``describe_datamodule``'s keys)."""
    from landlearn.data.datamodules import LandlearnDataModule, describe_datamodule

    if isinstance(dm, LandlearnDataModule) or not hasattr(dm, "input_specs"):
        return describe_datamodule(dm)
    first = inputs[0] if inputs else None
    head = heads[0] if heads else None
    return {
        "band_names": list(first.bands) if first else [],
        "class_names": list(head.classes) if head else [],
        "class_colors": [list(c) for c in head.colors] if head and head.colors else None,
        "mean": list(first.mean or []) if first else [],
        "std": list(first.std or []) if first else [],
        "chip_size": first.chip_size if first else None,
    }


def _match_logged_hparam(module: pl.LightningModule, dm: Any, key: str) -> None:
    """Keep Lightning from refusing clashing hyper-parameters.

    Lightning refuses to log a hyper-parameter that model and datamodule both hold with
    different values; log the datamodule's (the source of truth for data facts).
    """
    logged = getattr(dm, "hparams_initial", None) if dm is not None else None
    initial = getattr(module, "_hparams_initial", None)
    if logged is not None and initial is not None and key in logged and key in initial:
        initial[key] = logged[key]


def _check_model(model: str) -> None:
    """An unknown model name fails at construction, before any data is read."""
    from landlearn.models import MODELS

    MODELS.get(model)


def _check_class_loss(loss: str | dict[str, Any]) -> None:
    """An unknown loss name fails at construction, before any data is read."""
    from landlearn.losses import LOSSES

    if isinstance(loss, str):
        LOSSES.get(loss)
    elif isinstance(loss, dict):
        names = [loss["name"]] if "name" in loss else list(loss)
        for name in names:
            LOSSES.get(str(name))


def _memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 and channels_last else x


def _metric(collection: nn.ModuleDict, head: str) -> Metric:
    return cast(Metric, collection[head])
