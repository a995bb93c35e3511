"""One validator for what a bundle header or a checkpoint says about its model (issue 21).

A bundle is user input, and its header decides what gets built: every field is checked for type,
range and length before anything is allocated, and each problem is one ``LandlearnError`` naming
the file and the field. The checks come in the order loading needs them:

1. :func:`validate_meta`: the header JSON (types, ranges, lengths, known task and mode; format 2:
   input and head specs, named models, how they combine);
2. :func:`check_model_kwargs`: ``model_kwargs`` against the builder's signature;
3. :func:`build_skeleton`: the model built on the ``meta`` device (no memory), its parameter
   count against a cap (``max_params``, or the ``LANDLEARN_MAX_PARAMS`` environment variable);
4. :func:`check_state_shapes`: the file's tensor names and shapes against that model's, before a
   tensor is read.

This package sits at the bottom: it imports only ``errors``, ``conventions`` and torch; callers
(``landlearn.bundle``) pass the builder's signature and a function that builds the model.
"""

from __future__ import annotations

from landlearn.bundle_check.fields import MAX_CHIP_SIZE, MODES, type_name
from landlearn.bundle_check.header import TASKS, validate_meta
from landlearn.bundle_check.header_v2 import COMBINES
from landlearn.bundle_check.model import (
    DEFAULT_MAX_PARAMS,
    MAP_MAX_CLASSES,
    MAX_PARAMS_ENV,
    build_skeleton,
    check_map_classes,
    check_model_kwargs,
    check_state_shapes,
    resolve_max_params,
)

__all__ = [
    "COMBINES",
    "DEFAULT_MAX_PARAMS",
    "MAP_MAX_CLASSES",
    "MAX_CHIP_SIZE",
    "MAX_PARAMS_ENV",
    "MODES",
    "TASKS",
    "build_skeleton",
    "check_map_classes",
    "check_model_kwargs",
    "check_state_shapes",
    "resolve_max_params",
    "type_name",
    "validate_meta",
]
