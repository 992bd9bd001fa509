"""The mask a swapper or the face enhancer pastes with, from the job's ``MaskSettings``.

Box and occlusion are made on the target (unswapped) crop, area and region on the
swapped crop (MODELS-2.md §6.4); the enhancer uses the box with no padding and the
occlusion mask only. A mask with no area is returned as it is: the caller checks
``is_empty`` and leaves that face untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidInput, InvalidOptions
from engine.faces import Face
from engine.masks.area import area_mask
from engine.masks.box import box_mask
from engine.masks.combine import combine
from engine.masks.crop import check_crop
from engine.masks.occlusion import Occluder, occlusion_mask
from engine.masks.region import FaceParser
from engine.masks.settings import MaskSettings

NO_PADDING = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class MaskBuilder:
    """Settings plus the loaded models they need: ``occluders`` (one, or several for
    ``many``) when occlusion is on, ``parser`` when region is on."""

    settings: MaskSettings = MaskSettings()
    occluders: tuple[Occluder, ...] = ()
    parser: FaceParser | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "occluders", tuple(self.occluders))
        if self.settings.needs_occluder and not self.occluders:
            raise InvalidOptions("the 'occlusion' face mask needs an occluder model")
        if self.settings.needs_parser and self.parser is None:
            raise InvalidOptions("the 'region' face mask needs a face parser model")

    def build(
        self, crop: np.ndarray, swapped: np.ndarray, matrix: np.ndarray, face: Face
    ) -> np.ndarray:
        """The S×S float32 paste mask in [0, 1] of a swapped face.

        ``crop``: the target crop the swapper was fed; ``swapped``: its output at the
        same size; ``matrix``: frame → crop; ``face``: the target face (its 68 points
        for the area mask).
        """
        size = _same_size(crop, swapped)
        settings = self.settings
        masks: list[np.ndarray] = []
        for kind in settings.types:
            if kind == "box":
                masks.append(box_mask(size, settings.blur, settings.padding))
            elif kind == "occlusion":
                masks.append(occlusion_mask(self.occluders, crop))
            elif kind == "area":
                masks.append(area_mask(size, matrix, face.landmarks_68, settings.area_points))
            elif kind == "region":
                assert self.parser is not None
                masks.append(self.parser.mask(swapped, settings.region_classes))
        return combine(masks)

    def enhancer_mask(
        self, crop: np.ndarray, restored: np.ndarray, matrix: np.ndarray, face: Face
    ) -> np.ndarray:
        """The face enhancer's mask: the box without padding (blur from the settings) and,
        when on, the occlusion mask of the unrestored crop."""
        size = _same_size(crop, restored)
        masks = [box_mask(size, self.settings.blur, NO_PADDING)]
        if self.settings.needs_occluder:
            masks.append(occlusion_mask(self.occluders, crop))
        return combine(masks)


def _same_size(crop: np.ndarray, other: np.ndarray) -> int:
    size = check_crop("the target crop", crop)
    if check_crop("the processed crop", other) != size:
        raise InvalidInput(
            f"the target crop ({crop.shape}) and the processed crop ({other.shape}) differ in size"
        )
    return size
