"""The shared LightningModule: model by name, loss by name, craft, metrics, bundle metadata.

Tasks take any TorchGeo-style batch (``image`` plus ``label`` or ``mask``). ``num_classes`` and
``in_channels`` may be left out of a config: they are read from the datamodule in ``setup``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from landlearn.bundle import BundleMeta
from landlearn.colors import default_colors
from landlearn.conventions import IGNORE_INDEX
from landlearn.d4 import d4_mean, tta_transforms
from landlearn.errors import LandlearnError
from landlearn.tasks.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

__all__ = ["LandlearnTask", "cpu_has_native_bf16"]

_META_KEY = "landlearn_bundle_meta"
_RGB_ALIASES = (("red", "b04", "b4"), ("green", "b03", "b3"), ("blue", "b02", "b2"))


class LandlearnTask(pl.LightningModule):
    """Base of ``ClassificationTask`` and ``SegmentationTask``."""

    task: ClassVar[str] = ""
    target_key: ClassVar[str] = ""
    default_monitor: ClassVar[str] = ""

    def __init__(
        self,
        model: str,
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        in_channels: int | None = None,
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
    ) -> None:
        """Args:
        model: registered model name (``landlearn.models.list_models()``).
        model_kwargs: extra builder arguments, e.g. ``{"encoder": "resnet34"}``.
        loss: a loss name, or weights of a sum: ``{"ce": 0.5, "dice": 0.5}``.
        class_weights: weight the loss by inverse class frequency of the training split.
        scheduler: ``step``, ``cosine``, ``cyclic``, ``onecycle``, ``plateau`` or None.
        monitor: metric for the best checkpoint and early stopping (default per task).
        patience: early-stopping patience in epochs; 0 turns it off.
        channels_last: keep convolution weights and images in NHWC memory order, which the
            CPU (oneDNN) and GPU (cuDNN) kernels run faster. On a 2-core EPYC, a U-Net
            ResNet-18 training step on 256x256 chips is 1.3x faster in fp32 and 1.25-1.4x under
            bf16 autocast; a ResNet-18 on 64x64 chips gains 1.04-1.12x (benchmarks/train_step.py).
        tta: ``"d4"`` tests and predicts with the probabilities averaged over the 8 flips /
            quarter turns of each image (8x the inference; validation stays plain).
        """
        super().__init__()
        _check_names(model, loss)
        tta_transforms(tta)  # an unknown name fails here, not after training
        self.save_hyperparameters()
        self.monitor = monitor or self.default_monitor
        self.monitor_mode = "min" if self.monitor.endswith("loss") else "max"
        self.model: nn.Module | None = None
        self.criterion: nn.Module | None = None
        self.data_info: dict[str, Any] = {}
        self.test_results: dict[str, Any] | None = None
        self.test_examples: dict[str, list[np.ndarray]] = {}
        if num_classes is not None and in_channels is not None:
            self._build(num_classes, in_channels)

    # ---- construction -------------------------------------------------------------------
    @property
    def is_multilabel(self) -> bool:
        """Multi-label classification (sigmoid per class)."""
        return self.hparams["mode"] == "multilabel"

    @property
    def out_channels(self) -> int:
        """Number of model outputs: one logit for binary, else one per class."""
        k = int(self.hparams["num_classes"])
        return 1 if self.hparams["mode"] == "binary" else k

    def _build(self, num_classes: int, in_channels: int) -> None:
        from landlearn.models import build_model, model_task

        name = self.hparams["model"]
        if model_task(name) != self.task:
            raise LandlearnError(
                f"model {name!r} is a {model_task(name)} model; {type(self).__name__} needs a "
                f"{self.task} model"
            )
        self.hparams["num_classes"] = int(num_classes)
        self.hparams["in_channels"] = int(in_channels)
        self.model = build_model(
            name,
            in_channels=int(in_channels),
            num_classes=self.out_channels,
            pretrained=bool(self.hparams["pretrained"]),
            dropout=float(self.hparams["dropout"]),
            **(self.hparams["model_kwargs"] or {}),
        )
        if self.hparams.get("channels_last", True):
            self.model.to(memory_format=torch.channels_last)
        self._build_metrics()

    def _build_metrics(self) -> None:
        from landlearn.metrics import LandCoverMetrics

        k = int(self.hparams["num_classes"])
        mode = "multiclass" if self.hparams["mode"] == "binary" else self.hparams["mode"]
        kw = {"task": self.task, "mode": mode, "ignore_index": self.hparams["ignore_index"]}
        self.val_metrics = LandCoverMetrics(k, **kw)
        self.test_metrics = LandCoverMetrics(k, **kw)

    def setup(self, stage: str) -> None:
        """Read bands, classes and statistics from the datamodule; build what is missing."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            from landlearn.data.datamodules import describe_datamodule

            info = describe_datamodule(dm)
            self.data_info = {**info, **{k: v for k, v in self.data_info.items() if v}}
        names = self.hparams["class_names"] or self.data_info.get("class_names")
        data_names = list(self.data_info.get("class_names") or [])
        given = self.hparams["class_names"]
        if given and data_names and list(given) != data_names:
            raise LandlearnError(
                f"the model's class_names {list(given)} differ from the data's {data_names}; "
                "give them in one place"
            )
        if not given and data_names:
            self.hparams["class_names"] = data_names
        _match_logged_hparam(self, dm, "class_names")
        bands = self.data_info.get("band_names") or []
        want = self.hparams["in_channels"]
        if dm is not None and bands and want and int(want) != len(bands):
            raise LandlearnError(
                f"the model expects in_channels={want} but the data has {len(bands)} bands "
                f"({', '.join(bands[:13])}); fix in_channels or the data's bands"
            )
        if dm is not None and names and self.hparams["num_classes"]:
            if int(self.hparams["num_classes"]) != len(names):
                raise LandlearnError(
                    f"num_classes={self.hparams['num_classes']} but the data names {len(names)} "
                    f"classes ({', '.join(names[:12])})"
                )
        if self.model is None:
            k = self.hparams["num_classes"] or (len(names) if names else None)
            c = self.hparams["in_channels"] or len(self.data_info.get("band_names") or [])
            if not k or not c:
                raise LandlearnError(
                    "num_classes / in_channels unknown: set model.init_args.num_classes and "
                    "in_channels, or use a datamodule that names its classes and bands"
                )
            self._build(int(k), int(c))
        if self.criterion is None:
            self.criterion = self._build_loss(dm)

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

    def _build_loss(self, dm: Any) -> nn.Module:
        from landlearn.losses import build_loss

        weights = None
        if self.hparams["class_weights"]:
            weights = getattr(dm, "class_weights", None) if dm is not None else None
            if weights is None:
                raise LandlearnError(
                    "class_weights: true needs a datamodule with class_weights (landlearn's own)"
                )
            weights = torch.as_tensor(weights, dtype=torch.float32)
        return build_loss(
            self.hparams["loss"],
            num_classes=int(self.hparams["num_classes"]),
            ignore_index=int(self.hparams["ignore_index"]),
            class_weights=weights,
            mode=self.hparams["mode"],
        )

    # ---- forward and steps --------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model."""
        if self.model is None:
            raise RuntimeError("model not built; call setup() or pass num_classes/in_channels")
        if x.ndim == 4 and self.hparams.get("channels_last", True):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities; binary single-logit outputs become two columns."""
        if self.is_multilabel:
            return torch.sigmoid(logits.float())
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits.float())
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits.float(), dim=1)

    def _target(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.target_key not in batch:
            raise LandlearnError(
                f"{type(self).__name__} needs batches with {self.target_key!r}; "
                f"got keys {sorted(batch)}"
            )
        return batch[self.target_key]

    def _step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch["image"], self._target(batch)
        logits = self(x)
        if self.criterion is None:
            self.criterion = self._build_loss(None)
        loss = self.criterion(logits, y)
        return loss, logits, y

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        loss, _, _ = self._step(batch)
        bs = batch["image"].shape[0]
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metric updates on the validation split."""
        loss, logits, y = self._step(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=batch["image"].shape[0])
        self.val_metrics.update(self.probs(logits).detach(), y)

    def on_validation_epoch_end(self) -> None:
        """Log the validation summary metrics."""
        self._log_summary("val", self.val_metrics.compute())
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss, metrics and a few examples for the report."""
        loss, logits, y = self._step(batch)
        self.log("test_loss", loss, on_epoch=True, batch_size=batch["image"].shape[0])
        probs = self._tta_probs(batch["image"]) if self.hparams.get("tta") else self.probs(logits)
        probs = probs.detach()
        self.test_metrics.update(probs, y)
        self._keep_examples(batch["image"], y, probs)

    def on_test_epoch_start(self) -> None:
        """Start a fresh set of examples."""
        self.test_examples = {}

    def on_test_epoch_end(self) -> None:
        """Full test metrics (kept in ``test_results`` for metrics.json and the bundle)."""
        results = self.test_metrics.compute()
        self.test_metrics.reset()
        results["class_names"] = self.class_names
        if self.hparams.get("tta"):
            results["tta"] = self.hparams["tta"]
        self.test_results = results
        self._log_summary("test", results)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Class probabilities (averaged over the ``tta`` transforms when set)."""
        if self.hparams.get("tta"):
            return self._tta_probs(batch["image"])
        return self.probs(self(batch["image"]))

    def _tta_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities averaged over the ``tta`` transforms, maps turned back."""
        spatial = self.task == "segmentation"
        return d4_mean(lambda t: self.probs(self(t)), x, spatial=spatial, tta=self.hparams["tta"])

    def _log_summary(self, stage: str, m: dict[str, Any]) -> None:
        keys = ("overall_accuracy", "average_accuracy", "miou", "macro_f1", "kappa", "ece", "auroc")
        short = {"overall_accuracy": "oa", "average_accuracy": "aa", "macro_f1": "f1"}
        for key in keys:
            value = m.get(key)
            if value is None or (self.task == "classification" and key == "miou"):
                continue
            name = f"{stage}_{short.get(key, key)}"
            self.log(name, float(value), prog_bar=key in ("overall_accuracy", "miou"))

    # ---- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """Optimiser and schedule from the hyper-parameters."""
        hp = self.hparams
        opt = build_optimizer(
            self.parameters(),
            hp["optimizer"],
            lr=float(hp["lr"]),
            weight_decay=float(hp["weight_decay"]),
            momentum=float(hp["momentum"]),
        )
        trainer = self._trainer
        max_epochs = int(trainer.max_epochs or 1) if trainer is not None else 1
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

    # ---- examples and bundle metadata ---------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Class names from the config, else the datamodule, else ``class_<k>``."""
        names = self.hparams["class_names"] or self.data_info.get("class_names")
        k = int(self.hparams["num_classes"] or 0)
        if names and len(names) == k:
            return list(names)
        return [f"class_{i}" for i in range(k)]

    def _rgb_bands(self, c: int) -> list[int]:
        names = [n.lower() for n in self.data_info.get("band_names") or []]
        picked = []
        for aliases in _RGB_ALIASES:
            hit = next((i for i, n in enumerate(names) if n in aliases), None)
            picked.append(hit)
        if all(p is not None for p in picked):
            return [int(p) for p in picked if p is not None]
        return [0, 1, 2] if c >= 3 else [0, 0, 0]

    def _keep_examples(self, x: torch.Tensor, y: torch.Tensor, probs: torch.Tensor) -> None:
        have = len(self.test_examples.get("image", []))
        n = min(int(self.hparams["num_examples"]) - have, x.shape[0])
        if n <= 0:
            return
        rgb = x[:n, self._rgb_bands(x.shape[1])].detach().float().cpu().numpy()
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
        c = int(self.hparams["in_channels"])
        kwargs = dict(self.hparams["model_kwargs"] or {})
        kwargs["dropout"] = float(self.hparams["dropout"])
        kwargs["num_classes"] = self.out_channels
        kwargs["in_channels"] = c
        colors = info.get("class_colors") or default_colors(k)
        bands = list(info.get("band_names") or [f"B{i + 1}" for i in range(c)])
        mean_given, std_given = info.get("mean"), info.get("std")
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


def _match_logged_hparam(module: pl.LightningModule, dm: Any, key: str) -> None:
    """Lightning refuses to log a hyper-parameter that model and datamodule both hold with
    different values; log the datamodule's (the source of truth for data facts)."""
    logged = getattr(dm, "hparams_initial", None) if dm is not None else None
    initial = getattr(module, "_hparams_initial", None)
    if logged is not None and initial is not None and key in logged and key in initial:
        initial[key] = logged[key]


def _check_names(model: str, loss: str | dict[str, Any]) -> None:
    """Unknown model or loss names fail at construction, before any data is read."""
    from landlearn.losses import LOSSES
    from landlearn.models import MODELS

    MODELS.get(model)
    if isinstance(loss, str):
        LOSSES.get(loss)
    elif isinstance(loss, dict):
        names = [loss["name"]] if "name" in loss else list(loss)
        for name in names:
            LOSSES.get(str(name))
