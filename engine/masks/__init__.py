"""Face masks (MODELS-2.md §6): box, occlusion (XSeg), region (BiSeNet) and area
(68 landmarks), softened and combined by the element-wise minimum.

``MaskSettings`` holds a job's choices; ``MaskBuilder(settings, occluders, parser)``
makes the paste mask of each face (``build``) or of an enhanced face
(``enhancer_mask``); ``is_empty`` tells a mask that lets nothing through.
"""

from engine.masks.area import area_mask
from engine.masks.box import box_mask
from engine.masks.builder import MaskBuilder
from engine.masks.combine import combine, is_empty
from engine.masks.occlusion import Occluder, occlusion_mask
from engine.masks.region import FaceParser, best_class_in
from engine.masks.settings import (
    AREA_POINTS,
    AREAS,
    DEFAULT_OCCLUDER,
    DEFAULT_PARSER,
    MANY_OCCLUDERS,
    MASK_TYPES,
    REGION_CLASSES,
    REGIONS,
    MaskSettings,
    parse_areas,
    parse_blur,
    parse_padding,
    parse_regions,
    parse_types,
)
from engine.masks.soften import soften, soften_sigma

__all__ = [
    "AREAS",
    "AREA_POINTS",
    "DEFAULT_OCCLUDER",
    "DEFAULT_PARSER",
    "MANY_OCCLUDERS",
    "MASK_TYPES",
    "REGIONS",
    "REGION_CLASSES",
    "FaceParser",
    "MaskBuilder",
    "MaskSettings",
    "Occluder",
    "area_mask",
    "best_class_in",
    "box_mask",
    "combine",
    "is_empty",
    "occlusion_mask",
    "parse_areas",
    "parse_blur",
    "parse_padding",
    "parse_regions",
    "parse_types",
    "soften",
    "soften_sigma",
]
