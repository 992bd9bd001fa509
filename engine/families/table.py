"""Every family the engine knows, by kind: its tensors and its processing constants.

Facts from ``../shared/MODELS-2.md`` (section numbers in the comments) and
``MODELS.md``. A catalogue entry names one of these; the code that runs a family
(``engine.swappers.neural``, ``engine.enhancers``, ``engine.masks`` …) reads its
constants from here, so a family's numbers live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.families.io import ANY_FLOAT, FLOATS, INTEGERS, FamilyIO, TensorSpec

Kind = Literal[
    "swapper",
    "enhancer",
    "frame_enhancer",
    "recognizer",
    "converter",
    "detector",
    "landmarker",
    "occluder",
    "parser",
    "classifier",
]
KINDS: tuple[str, ...] = (
    "swapper",
    "enhancer",
    "frame_enhancer",
    "recognizer",
    "converter",
    "detector",
    "landmarker",
    "occluder",
    "parser",
    "classifier",
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SourceKind = Literal["emap", "embedding_norm", "converter_raw", "converter_norm", "image"]


@dataclass(frozen=True)
class SwapperFamily:
    """A swapper's processing (MODELS-2.md §5.2). Means/stds are per RGB channel on
    [0, 1] values; ``denormalise``: the output is mapped back by ×std + mean (else it is
    already in [0, 1]). ``source``: how the identity is fed — ``emap`` (raw embedding
    projected by the file's emap), ``embedding_norm`` (L2-normalised embedding),
    ``converter_raw`` / ``converter_norm`` (through a converter model, then used as is /
    L2-normalised), ``image`` (an aligned source crop)."""

    name: str
    template: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    denormalise: bool
    source: SourceKind
    default_size: int
    source_template: str = ""
    source_size: int = 0
    boost_sizes: tuple[int, ...] = ()

    @property
    def needs_embedding(self) -> bool:
        return self.source != "image"

    @property
    def needs_converter(self) -> bool:
        return self.source in ("converter_raw", "converter_norm")


HALF = (0.5, 0.5, 0.5)
ZERO = (0.0, 0.0, 0.0)
ONE = (1.0, 1.0, 1.0)

SWAPPER_FAMILIES: dict[str, SwapperFamily] = {
    family.name: family
    for family in (
        SwapperFamily("inswapper", "arcface_128", ZERO, ONE, False, "emap", 128),
        SwapperFamily("hyperswap", "arcface_128", HALF, HALF, True, "embedding_norm", 256),
        SwapperFamily("ghost", "arcface_112_v1", HALF, HALF, True, "converter_raw", 256),
        SwapperFamily(
            "simswap", "arcface_112_v1", IMAGENET_MEAN, IMAGENET_STD, False, "converter_norm", 256
        ),
        SwapperFamily("hififace", "mtcnn_512", HALF, HALF, True, "converter_norm", 256),
        SwapperFamily(
            "blendswap", "ffhq_512", ZERO, ONE, False, "image", 256, "arcface_112_v2", 112
        ),
        SwapperFamily("uniface", "ffhq_512", HALF, HALF, True, "image", 256, "ffhq_512", 256),
    )
}

MAX_PIXEL_BOOST = 1024


def swapper_io(family: SwapperFamily) -> FamilyIO:
    """``target`` [1,3,M,M] and ``source`` ([1,512] or an image), output 0 [1,3,M,M];
    extra outputs (HyperSwap's ``mask``) are allowed."""
    if family.source == "image":
        source = TensorSpec("source", FLOATS, (None, 3, None, None))
    else:
        source = TensorSpec("source", FLOATS, (None, 512))
    return FamilyIO(
        inputs=(TensorSpec("target", FLOATS, (None, 3, None, None)), source),
        outputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
    )


@dataclass(frozen=True)
class EnhancerFamily:
    """A face enhancer (MODELS-2.md §8): RGB, (x/255 − 0.5)/0.5 in, [−1, 1] out.
    ``template``: the alignment template; ``small_template`` is used instead when the
    native size is 256 (GPEN-BFR 256 uses arcface_128)."""

    name: str
    template: str = "ffhq_512"
    small_template: str = ""
    default_size: int = 512


ENHANCER_FAMILIES: dict[str, EnhancerFamily] = {
    family.name: family
    for family in (
        EnhancerFamily("gfpgan"),
        EnhancerFamily("codeformer"),
        EnhancerFamily("gpen", small_template="arcface_128"),
        EnhancerFamily("restoreformer"),
    )
}

ENHANCER_IO = FamilyIO(
    inputs=(TensorSpec("input", FLOATS, (None, 3, None, None)),),
    outputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
    optional_inputs=(TensorSpec("weight", ANY_FLOAT, None),),
)


@dataclass(frozen=True)
class FrameEnhancerFamily:
    """A whole-frame upscaler (MODELS-2.md §9): RGB /255 tiles in, [0, 1] out, ×scale."""

    name: str
    tile: int = 256
    pad: int = 16
    overlap: int = 8


FRAME_ENHANCER_FAMILIES = {"real_esrgan": FrameEnhancerFamily("real_esrgan")}
FRAME_ENHANCER_IO = FamilyIO(
    inputs=(TensorSpec("input", FLOATS, (None, 3, None, None)),),
    outputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
)

CONVERTER_IO = FamilyIO(  # crossface (§5.3): raw embedding in, 512 out
    inputs=(TensorSpec("input", FLOATS, (None, 512)),),
    outputs=(TensorSpec(None, FLOATS, None),),
)

RECOGNIZER_IO = FamilyIO(  # arcface (§13, MODELS.md): [B,3,112,112] → [B,512]
    inputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
    outputs=(TensorSpec(None, FLOATS, (None, None)),),
)

OCCLUDER_IO = FamilyIO(  # xseg (§6.1): NHWC BGR /255
    inputs=(TensorSpec("input", FLOATS, (None, 256, 256, 3)),),
    outputs=(TensorSpec(None, FLOATS, None),),
)

PARSER_IO = FamilyIO(  # bisenet (§6.1): NCHW RGB ImageNet, 19 class scores
    inputs=(TensorSpec("input", FLOATS, (None, 3, 512, 512)),),
    outputs=(TensorSpec(None, FLOATS, (None, 19, None, None)),),
)

LANDMARKER_68_IO = FamilyIO(  # 2dfan4 / peppa_wutz (§7): BGR /255 256², (x, y, score)
    inputs=(TensorSpec("input", FLOATS, (None, 3, 256, 256)),),
    outputs=(TensorSpec(None, FLOATS, None),),
)

FAN_68_5_IO = FamilyIO(  # fan_68_5 (§7): 5 points in ffhq_512 unit space → 68 points
    inputs=(TensorSpec("input", ANY_FLOAT, (None, 5, 2)),),
    outputs=(TensorSpec(None, ANY_FLOAT, None),),
)

DETECTOR_ANCHOR_IO = FamilyIO(  # scrfd / retinaface (§10): 9 outputs by position
    inputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
    outputs=tuple(TensorSpec(None, FLOATS, None) for _ in range(6)),
)

YOLO_FACE_IO = FamilyIO(
    inputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
    outputs=(TensorSpec(None, FLOATS, None),),
)

YUNET_IO = FamilyIO(
    inputs=(TensorSpec(None, FLOATS, (None, 3, None, None)),),
    outputs=tuple(TensorSpec(None, FLOATS, None) for _ in range(12)),
)

CLASSIFIER_IO = FamilyIO(  # fairface (§11): race, gender, age class ids
    inputs=(TensorSpec("input", FLOATS, (None, 3, 224, 224)),),
    outputs=tuple(TensorSpec(None, (*INTEGERS, *ANY_FLOAT), None) for _ in range(3)),
)

FAMILIES_BY_KIND: dict[str, dict[str, FamilyIO]] = {
    "swapper": {name: swapper_io(family) for name, family in SWAPPER_FAMILIES.items()},
    "enhancer": {name: ENHANCER_IO for name in ENHANCER_FAMILIES},
    "frame_enhancer": {name: FRAME_ENHANCER_IO for name in FRAME_ENHANCER_FAMILIES},
    "converter": {"crossface": CONVERTER_IO},
    "recognizer": {"arcface": RECOGNIZER_IO},
    "occluder": {"xseg": OCCLUDER_IO},
    "parser": {"bisenet": PARSER_IO},
    "landmarker": {
        "2dfan4": LANDMARKER_68_IO,
        "peppa_wutz": LANDMARKER_68_IO,
        "fan_68_5": FAN_68_5_IO,
    },
    "detector": {
        "scrfd": DETECTOR_ANCHOR_IO,
        "retinaface": DETECTOR_ANCHOR_IO,
        "yolo_face": YOLO_FACE_IO,
        "yunet": YUNET_IO,
        "mtcnn": YOLO_FACE_IO,
    },
    "classifier": {"fairface": CLASSIFIER_IO},
}


def family_io(kind: str, family: str) -> FamilyIO | None:
    """The tensors of ``family`` of ``kind``; None when there is no such family."""
    return FAMILIES_BY_KIND.get(kind, {}).get(family)
