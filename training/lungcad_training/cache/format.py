"""The cache's on-disk format: file names, the policy hash that names its top folder, geometry JSON.

Bump :data:`CACHE_FORMAT` whenever what an entry holds changes: it is part of the policy hash, so
old entries are then simply not found.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.ct import Geometry
from lungcad.io import geometry_of

CACHE_FORMAT = 1
"""Bumped whenever what an entry holds changes; part of the policy hash."""

CT_FILE = "ct.npy"
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"
LABEL_SUFFIX = "_nodules.nrrd"


def policy_hash(policy: dict) -> str:
    """Short, stable hash of a scale policy (and the cache format): the cache's top folder."""
    text = json.dumps({"cache_format": CACHE_FORMAT, "policy": policy}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def same_geometry(a: Geometry, b: Geometry) -> bool:
    return (
        a.shape_irc == b.shape_irc
        and np.allclose(a.origin_xyz, b.origin_xyz, atol=1e-4)
        and np.allclose(a.spacing_xyz, b.spacing_xyz, atol=1e-6)
        and np.allclose(a.direction, b.direction, atol=1e-6)
    )


def header_geometry(path: Path) -> Geometry:
    """A file's grid from its header alone (no voxel data read)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return geometry_of(reader)
