"""The model bundle: one ``.safetensors`` file holding the weights and JSON metadata.

The safetensors header carries a ``landlearn`` entry with the JSON of
:class:`~landlearn.bundle.meta.BundleMeta` (DESIGN.md, "The model bundle"): format version, the
input specs (band names and per-band mean / std of the training split), the head specs (class
names and colours, ignore index), one or more named models (registry name and builder
arguments; tensors ``"<name>.<param>"``), how they combine (``single``, ``mean``, or ``first``:
the first predicts, the others ride along), chip size,
test metrics and versions. Format 1 files are upgraded on read. Loading reads JSON and tensors
only: no code can run. A Lightning ``.ckpt`` is opened with ``weights_only=True``.

- :mod:`~landlearn.bundle.meta`: ``BundleMeta`` and ``ModelEntry``, the format-1 upgrade;
- :mod:`~landlearn.bundle.predictor`: ``Predictor`` (one model for inference);
- :mod:`~landlearn.bundle.members`: ``Ensemble`` (the mean of several) and ``check_members``;
- :mod:`~landlearn.bundle.files`: ``save_bundle``, ``read_meta``, ``load_bundle``.
"""

from __future__ import annotations

from landlearn.bundle.files import build_bundle_model, load_bundle, read_meta, save_bundle
from landlearn.bundle.members import Ensemble, check_members, merged_meta
from landlearn.bundle.meta import BundleMeta, ModelEntry, meta_from_specs
from landlearn.bundle.predictor import MetaView, Predictor, classes_of

__all__ = [
    "BundleMeta",
    "Ensemble",
    "MetaView",
    "ModelEntry",
    "Predictor",
    "build_bundle_model",
    "check_members",
    "classes_of",
    "load_bundle",
    "merged_meta",
    "meta_from_specs",
    "read_meta",
    "save_bundle",
]
