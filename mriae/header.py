"""Geometry in the .mriae JSON header: exact, and written as briefly as exactness allows.

Affines lose their constant last row, and affines whose values are all float32 (every NIfTI
affine: qform/sform are stored as float32) are written with float32's shortest decimal
forms, about half the digits of float64's. A grid that was not resampled is not written at
all: the decoder plans it again from the image's shape and affine.
"""

from __future__ import annotations

import numpy as np

from mriae.transforms.geometry import GridPlan, plan_on

_LAST_ROW = (0.0, 0.0, 0.0, 1.0)


def affine_record(affine: np.ndarray) -> dict[str, list[float]]:
    """``{"affine32": [...]}`` or ``{"affine": [...]}``: the rows of ``affine`` that
    :func:`affine_of` needs to rebuild it bit for bit."""
    affine = np.asarray(affine, dtype=np.float64).reshape(4, 4)
    values = affine[:3] if affine[3].tobytes() == np.asarray(_LAST_ROW).tobytes() else affine
    flat = values.ravel()
    short = [float(str(np.float32(v))) for v in flat]
    if np.array_equal(np.asarray(short, dtype=np.float32).astype(np.float64), flat):
        return {"affine32": short}
    return {"affine": flat.tolist()}


def affine_of(record: dict) -> np.ndarray:
    """The 4×4 float64 affine written by :func:`affine_record` into ``record``."""
    if "affine32" in record:
        values = np.asarray(record["affine32"], dtype=np.float32).astype(np.float64)
    elif "affine" in record:
        values = np.asarray(record["affine"], dtype=np.float64)
    else:
        raise ValueError("the image record has no affine")
    if values.size == 12:
        values = np.concatenate([values, _LAST_ROW])
    if values.size != 16:
        raise ValueError(f"an affine has 12 or 16 values, got {values.size}")
    return values.reshape(4, 4)


def grid_record(grid: GridPlan) -> dict | None:
    """The coding grid of a resampled ``grid`` (shape and affine); None if not resampled."""
    if not grid.resampled:
        return None
    return {"shape": list(grid.coding_shape), **affine_record(np.asarray(grid.coding_affine).reshape(4, 4))}


def grid_of(record: dict | None, shape: tuple[int, int, int], affine: np.ndarray, levels: int) -> GridPlan:
    """Inverse of :func:`grid_record` for an image of spatial ``shape`` and ``affine``."""
    if record is None:
        return plan_on(shape, affine, levels)
    return plan_on(shape, affine, levels, tuple(record["shape"]), affine_of(record))
