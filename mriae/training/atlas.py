"""A whole-head tissue atlas: soft tissue classes of the MNI ICBM152 2009c head (issue 13).

The 2009c nonlinear asymmetric templates (fetched by pipelines/training/fetch_templates.py into
the cache, never the repository) show skull, scalp, face, eyes and the top of the neck. Their
brain is split by the GM/WM/CSF probability maps; the rest of the head by its own T1 and PD
intensities, which separate the tissues a head scan shows around the brain:

- ``fat``: bright on T1 (subcutaneous and orbital fat, bone marrow of the skull and clivus),
- ``fluid``: dark on T1, bright on PD (vitreous of the eyes, CSF outside the brain mask, optic
  nerve sheaths),
- ``bone_air``: dark on both (cortical bone, sinuses, mastoid and nasal air, teeth),
- ``soft``: the rest (muscle, skin, glands, vessels walls, optic nerves),

and ``air`` outside the head. Synthetic contrasts give every class its own intensity
(mriae.training.heads); the template's fine detail is kept as a separate texture map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

CLASSES = ("gm", "wm", "csf", "fluid", "fat", "soft", "bone_air", "air")
"""Tissue classes, in the order of HeadAtlas.memberships."""

SCALE = 10_000.0
"""The 2009c templates store intensities as uint16 scaled to 0..10000."""


@dataclass(frozen=True)
class HeadAtlas:
    """Soft class memberships (len(CLASSES), D, H, W) summing to 1 per voxel, a texture map
    (D, H, W: the template's detail around its local mean, about zero-mean), the real
    template contrasts scaled to [0, 1], and the voxel size in mm."""

    memberships: np.ndarray
    texture: np.ndarray
    contrasts: dict[str, np.ndarray]
    spacing: float

    @classmethod
    def from_templates(cls, folder: Path, resolution: str = "1mm") -> HeadAtlas:
        """Build the atlas from the cached 2009c templates at ``resolution`` ("1mm" or "2mm")."""
        folder = Path(folder)
        if not (folder / f"{resolution}_T1.nii.gz").is_file():
            raise FileNotFoundError(
                f"{folder}: no whole-head templates; run python pipelines/training/fetch_templates.py"
            )

        def read(name: str) -> np.ndarray:
            return np.asarray(nib.load(folder / f"{resolution}_{name}.nii.gz").dataobj, dtype=np.float32)

        t1, pd = read("T1") / SCALE, read("PD") / SCALE
        contrasts = {"t1": t1, "pd": pd}
        if (folder / f"{resolution}_T2.nii.gz").is_file():
            contrasts["t2"] = read("T2") / SCALE
        brain = read("brainmask") > 0
        tissue = np.stack([read("tpm_gm"), read("tpm_wm"), read("tpm_csf")])
        return cls(classify(t1, pd, brain, tissue), detail(t1), contrasts, float(resolution[0]))


def head_mask(t1: np.ndarray, pd: np.ndarray) -> np.ndarray:
    """The head: voxels brighter than the background on T1 or PD, closed, holes (sinuses,
    airways) filled, largest connected part."""
    head = ndimage.binary_closing((t1 > 0.08) | (pd > 0.08), iterations=3)
    head = ndimage.binary_fill_holes(head)
    labels, count = ndimage.label(head)
    if count == 0:
        return head
    sizes = ndimage.sum(head, labels, range(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def classify(t1: np.ndarray, pd: np.ndarray, brain: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Soft memberships of CLASSES from T1/PD in [0, 1], a brain mask and GM/WM/CSF maps."""
    head = head_mask(t1, pd)
    outside = head & ~brain
    hard = {
        "bone_air": outside & (t1 < 0.15) & (pd < 0.2),
        "fluid": outside & (t1 < 0.3) & (pd >= 0.3),
        "fat": outside & (t1 >= 0.55),
    }
    hard["soft"] = outside & ~(hard["bone_air"] | hard["fluid"] | hard["fat"])
    smooth = {name: ndimage.gaussian_filter(mask.astype(np.float32), 0.6) for name, mask in hard.items()}
    inside = ndimage.gaussian_filter(brain.astype(np.float32), 0.6)
    brain_total = np.maximum(tissue.sum(axis=0), 1e-3)
    brain_classes = [inside * tissue[i] / brain_total for i in range(3)]
    air = ndimage.gaussian_filter((~head).astype(np.float32), 0.6)
    stacked = np.stack(brain_classes + [smooth[n] for n in ("fluid", "fat", "soft", "bone_air")] + [air])
    return (stacked / np.maximum(stacked.sum(axis=0), 1e-6)).astype(np.float32)


def detail(volume: np.ndarray) -> np.ndarray:
    """Fine structure of ``volume`` relative to its local mean (σ 1.5 voxels), clipped to ±1."""
    local = ndimage.gaussian_filter(volume, 1.5)
    return np.clip((volume - local) / np.maximum(local, 0.05), -1, 1).astype(np.float32)
