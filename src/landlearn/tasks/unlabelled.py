"""The unlabelled side of a training step: batches drawn from a datamodule's unlabelled loader.

Semi-supervised tasks (JEM's p(x) term, mean teacher, FixMatch, CPS) draw one unlabelled batch
per labelled one. :class:`UnlabelledStream` cycles the datamodule's ``unlabelled_dataloader()``
(one pass of the unlabelled set per exhaustion) and passes each batch through the datamodule's
``on_after_batch_transfer`` like a training batch: normalised with the training statistics and
augmented with the training geometry (the "weak view" of the consistency methods). The batch
holds the inputs only: the unlabelled dataset strips ``label`` / ``mask`` / ``target``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from landlearn.errors import LandlearnError

__all__ = ["UnlabelledStream"]


class UnlabelledStream:
    """Endless, seeded unlabelled batches of ``datamodule``, on ``device`` and transformed.

    Args:
        datamodule: a landlearn datamodule with unlabelled samples (``label_fraction`` < 1).
        owner: who asks, for the error message.

    Raises:
        LandlearnError: the datamodule has no ``unlabelled_dataloader`` (its own error when it
            has no unlabelled samples).
    """

    def __init__(self, datamodule: Any, owner: str) -> None:
        if datamodule is None or not hasattr(datamodule, "unlabelled_dataloader"):
            raise LandlearnError(
                f"{owner} needs a landlearn datamodule with unlabelled samples (label_fraction < 1)"
            )
        self.datamodule = datamodule
        self.loader = datamodule.unlabelled_dataloader()
        self._iter: Iterator[Any] = iter(self.loader)

    def next(self, device: torch.device) -> dict[str, Any]:
        """The next batch, moved to ``device`` and through the datamodule's transfer hook."""
        try:
            batch = next(self._iter)
        except StopIteration:
            self._iter = iter(self.loader)
            batch = next(self._iter)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return dict(self.datamodule.on_after_batch_transfer(batch, 0))
