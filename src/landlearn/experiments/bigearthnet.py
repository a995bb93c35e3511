"""``landlearn experiment bigearthnet``: BigEarthNet S1 + S2 pairs through a multi-label fusion.

An ingestion and shape check (issue 16, experiment 4), not an accuracy: the six real pairs in
``../shared/data/bigearthnet_pairs`` are read with their 20 m / 60 m Sentinel-2 bands resampled to
10 m (12 × 120 × 120) and Sentinel-1 VV / VH (2 × 120 × 120), multi-hot CORINE labels; a gated
fusion with one ResNet branch per sensor trains with binary cross-entropy per class, is written as
a bundle, loaded back and asked for 0/1 per class, with and without S1 (modality dropout).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from landlearn.experiments.common import fit_quietly, machine, machine_markdown, write_study

log = logging.getLogger(__name__)

__all__ = ["run_bigearthnet"]

Say = Callable[[str], None]


def run_bigearthnet(
    root: str | Path, out: Path, *, encoder: str = "resnet18", epochs: int = 2, seed: int = 0,
    say: Say = log.info,
) -> dict[str, Any]:  # fmt: skip
    """Read, train, save, load, predict; write ``bigearthnet.json`` / ``.md``."""
    from landlearn.bundle import load_bundle
    from landlearn.data.bigearthnet import BigEarthNetPairsDataModule
    from landlearn.tasks import ClassificationTask

    t0 = time.perf_counter()
    dm = BigEarthNetPairsDataModule(str(root), test_pairs=2, batch_size=4, seed=seed)
    facts = dm.describe()
    say(f"BigEarthNet pairs: {facts}")
    task = ClassificationTask(
        model="gated_fusion", mode="multilabel", loss="bce",
        model_kwargs={"encoder": encoder, "modality_dropout": 0.2},
    )  # fmt: skip
    result = fit_quietly(task, dm, "bigearthnet", out / "runs", seed, epochs)
    assert result.bundle is not None
    pred = load_bundle(result.bundle)
    assert dm.test_dataset is not None
    sample = dm.test_dataset[0]
    both = pred.predict({"s2": sample["s2"], "s1": sample["s1"]})["classification"]
    s2_only = pred.predict({"s2": sample["s2"]})["classification"]
    record: dict[str, Any] = {
        **facts,
        "class_names": dm.class_names,
        "labels_per_pair": [int(dm.test_dataset[i]["label"].sum()) for i in range(2)],
        "bundle_inputs": [s.name for s in pred.meta.inputs],
        "bundle_head": pred.meta.heads[0].kind,
        "prediction_shape": list(both.shape),
        "prediction_values": sorted({int(v) for v in torch.as_tensor(both).flatten().tolist()}),
        "prediction_without_s1_shape": list(s2_only.shape),
        "missing_inputs": list(getattr(pred, "last_missing", []) or []),
        "test_metrics_not_a_result": {
            k: v for k, v in result.metrics.items() if isinstance(v, (int, float))
        },
        "encoder": encoder,
        "epochs": epochs,
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    md = (
        f"BigEarthNet S1 + S2 pairs (`{root}`), ingestion check: {facts['pairs']} pairs "
        f"(4 train, 2 test), {facts['classes']} CORINE classes present, S2 {facts['s2']} (20 m / "
        f"60 m bands resampled to 10 m), S1 {facts['s1']}; a `gated_fusion` ({encoder} per "
        f"sensor, modality dropout 0.2) trained {epochs} epochs with BCE per class, written as "
        f"a bundle (inputs {record['bundle_inputs']}, head {record['bundle_head']}), loaded "
        f"back: prediction {record['prediction_shape']} with values "
        f"{record['prediction_values']}; without S1 {record['prediction_without_s1_shape']} "
        f"(missing inputs reported: {record['missing_inputs']}). Six pairs are far too few to "
        f"claim an accuracy. Wall {record['wall_s']} s.\n\n{machine_markdown(record['machine'])}"
    )
    record["markdown"] = md
    write_study(out, "bigearthnet", record, md)
    return record
