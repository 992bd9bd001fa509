"""Install stand-in models under their real registry names, with their own real checksums.

The manager then runs its normal checksum check on them, so the loading code
is exactly the code that loads the real downloads.

``MAKERS`` holds one default stand-in per catalogue name (``maker(path) -> path``);
a test that needs another variant (an occluder with another pattern, a parser with
other blocks) passes ``makers={name: maker}`` to ``install_standins``. The defaults:

- ``hyperswap_1a_256``: HyperSwap's tensors (``target`` [1,3,256,256], ``source``
  [1,512] → ``output`` and ``mask``); it undoes the family's [−1, 1] input and answers
  a black face, so every swapped pixel visibly changes.
- ``xseg_1``: visible (1) in the upper half of its 256² input, covered below;
  ``xseg_2``: visible in the left half.
- ``bisenet_resnet_34``: class 10 (nose) in ``PARSER_NOSE_BLOCK`` of its 512² input,
  background elsewhere.
- ``2dfan4`` / ``peppa_wutz``: the fixed face ``LANDMARK_ROWS`` (heatmap units, full
  score); ``fan_68_5``: each of the 68 points a fixed affine combination of the five
  (``FAN_68_5_WEIGHTS``), so its estimate is the same face layout on any five points.
- ``fairface``, ``retinaface_10g``, ``yoloface_8n``, ``yunet_2023_mar``: the builders'
  defaults (``tests/standins/landmarkers.py``, ``tests/standins/detectors.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from engine.models.manager import ModelManager
from engine.models.registry import REGISTRY
from tests.standins.arcface import make_arcface
from tests.standins.detectors import make_retinaface, make_yolo_face, make_yunet
from tests.standins.gfpgan import make_gfpgan
from tests.standins.inswapper import make_inswapper
from tests.standins.landmarkers import make_fairface, make_fan_68_5, make_landmarker
from tests.standins.maskers import make_occluder, make_parser
from tests.standins.scrfd import make_scrfd
from tests.standins.swapper_families import make_swapper

Maker = Callable[[Path], Path]

PARSER_NOSE = 10  # BiSeNet's nose class (MODELS-2.md §6.2)
PARSER_NOSE_BLOCK = (256, 320, 224, 288)  # rows y0:y1, columns x0:x1 of the 512² input
HEATMAP_SCALE = 4.0  # 256-px landmarker crop / 64-px heatmap


def _ellipse(centre: tuple[float, float], radii: tuple[float, float], count: int, start: float):
    angles = start - np.arange(count) * (2 * np.pi / count)
    return np.stack(
        [centre[0] + radii[0] * np.cos(angles), centre[1] - radii[1] * np.sin(angles)], axis=1
    )


def _face_layout() -> np.ndarray:
    """A plausible iBUG 68-point face in the landmarkers' 256² crop (pixels): the
    detector box fills the middle 195 px, eyes near y 105, mouth near y 175."""
    jaw_angles = np.pi - np.arange(17) * (np.pi / 16)
    jaw = np.stack([128 + 83 * np.cos(jaw_angles), 100 + 120 * np.sin(jaw_angles)], axis=1)
    brows = np.array(
        [[65 + 12.5 * i, 80] for i in range(5)] + [[141 + 12.5 * i, 80] for i in range(5)]
    )
    bridge = np.array([[128, 100], [128, 113], [128, 126], [128, 140]])
    nostrils = np.array([[110 + 9 * i, 148] for i in range(5)])
    hexagon = np.array([[-15, 0], [-7, -5], [7, -5], [15, 0], [7, 5], [-7, 5]])
    eyes = np.concatenate([hexagon + [95, 105], hexagon + [161, 105]])
    outer = _ellipse((128, 175), (23, 12), 12, np.pi)  # 48 left corner, 54 right corner
    inner = _ellipse((128, 175), (15, 6), 8, np.pi)
    points = np.concatenate([jaw, brows, bridge, nostrils, eyes, outer, inner])
    assert points.shape == (68, 2)
    return points.astype(np.float32)


FACE_LAYOUT = _face_layout()
LANDMARK_ROWS = np.concatenate(
    [FACE_LAYOUT / HEATMAP_SCALE, np.ones((68, 1), np.float32)], axis=1
).astype(np.float32)  # (68, 3): x, y in heatmap units, score 1


def _five_of(points68: np.ndarray) -> np.ndarray:
    """Eye means (36–41, 42–47), nose tip 30, mouth corners 48 and 54."""
    return np.stack(
        [
            points68[36:42].mean(axis=0),
            points68[42:48].mean(axis=0),
            points68[30],
            points68[48],
            points68[54],
        ]
    )


def _affine_weights(points68: np.ndarray, five: np.ndarray) -> np.ndarray:
    """(68, 5) weights, each row summing to 1, with ``weights @ five == points68``: an
    affine combination, so the same weights on any similar five points give the same
    layout moved along with them."""
    system = np.vstack([five.T.astype(np.float64), np.ones((1, 5))])  # (3, 5)
    targets = np.vstack([points68.T.astype(np.float64), np.ones((1, 68))])  # (3, 68)
    weights = np.linalg.pinv(system) @ targets
    return weights.T.astype(np.float32)


FAN_68_5_WEIGHTS = _affine_weights(FACE_LAYOUT, _five_of(FACE_LAYOUT))


def make_hyperswap(path: Path) -> Path:
    """HyperSwap stand-in whose face comes back black (see the module docstring)."""
    half = (0.5, 0.5, 0.5)
    return make_swapper(
        path,
        size=256,
        undo_mean=half,
        undo_std=half,
        out_mean=half,
        out_std=half,
        curves=("zero", "zero", "zero"),
        mask_output=True,
    )


def make_2dfan4(path: Path, rows: np.ndarray = LANDMARK_ROWS, peak: float = 0.9) -> Path:
    """2DFAN4 stand-in answering ``rows``; every heatmap peaks at ``peak`` (0.9 = full
    score, MODELS-2.md §7)."""
    return make_landmarker(path, "2dfan4", rows=rows, peaks=np.full(68, peak, np.float32))


def make_fan_68_5_layout(path: Path) -> Path:
    return make_fan_68_5(path, FAN_68_5_WEIGHTS, np.zeros(2, np.float32))


MAKERS: dict[str, Maker] = {
    "arcface_w600k_r50": make_arcface,
    "inswapper_128": make_inswapper,
    "gfpgan_1.4": make_gfpgan,
    "scrfd_2.5g": make_scrfd,
    "hyperswap_1a_256": make_hyperswap,
    "xseg_1": functools.partial(make_occluder, visible="upper"),
    "xseg_2": functools.partial(make_occluder, visible="left"),
    "bisenet_resnet_34": functools.partial(make_parser, blocks={PARSER_NOSE: [PARSER_NOSE_BLOCK]}),
    "2dfan4": make_2dfan4,
    "peppa_wutz": functools.partial(make_landmarker, family="peppa_wutz", rows=LANDMARK_ROWS),
    "fan_68_5": make_fan_68_5_layout,
    "fairface": make_fairface,
    "retinaface_10g": make_retinaface,
    "yoloface_8n": make_yolo_face,
    "yunet_2023_mar": make_yunet,
}


def install_standins(
    models_dir: Path,
    names: tuple[str, ...],
    makers: Mapping[str, Maker] | None = None,
) -> ModelManager:
    """Write stand-ins for ``names`` into ``models_dir``; return a manager that trusts them.

    ``makers``: variants that replace ``MAKERS``' default for their names."""
    models_dir.mkdir(parents=True, exist_ok=True)
    chosen = {**MAKERS, **(makers or {})}
    registry = dict(REGISTRY)
    for name in names:
        spec = REGISTRY[name]
        path = chosen[name](models_dir / spec.filename)
        data = Path(path).read_bytes()
        registry[name] = dataclasses.replace(
            spec, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
        )
    return ModelManager(models_dir, registry)
