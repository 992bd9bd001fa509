"""One swapper class for every neural swapper family (MODELS-2.md §5).

inswapper, hyperswap, ghost, simswap, hififace, blendswap and uniface differ only in
data: the alignment template, the per-channel input mean/std, whether the output is
mapped back by ×std + mean, and how the identity is fed (``engine.families.table``
``SWAPPER_FAMILIES``; ``engine.swappers.identity``). The pipeline is FaceFusion's
(§5.1): crop the target face with the family template at the pixel-boost size P = k·M,
split it into k² M×M sub-images (§5.5), normalise each (BGR→RGB, /255, (x − mean)/std),
run them (one batched run when the file's batch axis is dynamic), map the outputs back
to [0, 1], interleave them to P×P, mask, optionally colour-correct, and paste back.

Deliberate differences from FaceFusion: the swapped crop is rounded to uint8 (FaceFusion
keeps floats until the paste truncates); the identity weight mixes in the recognizer's
space before the projection/converter (``engine.swappers.identity``); pixel-boost sizes
are only whole multiples of M (FaceFusion lists 384 for blendswap_256 and 768 for
simswap_unofficial_512, where its reshape cannot work).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.align import estimate_affine, warp_face
from engine.converters import Converter
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.families.io import Tensor, bind_session
from engine.families.table import MAX_PIXEL_BOOST, SWAPPER_FAMILIES, swapper_io
from engine.masks.box import box_mask
from engine.options import SwapOptions
from engine.paste import color_map, paste_back, seamless_paste
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity
from engine.swappers.identity import (
    NEUTRAL_WEIGHT,
    balance,
    emap_latent,
    l2_normalise,
    mix_identity,
    source_crop_input,
)
from engine.swappers.inswapper import load_emap
from engine.swappers.pixel_boost import explode_bgr, implode_blob

if TYPE_CHECKING:
    from engine.models.registry import ModelSpec

MaskBuilder = Callable[[np.ndarray, np.ndarray, np.ndarray, Face], np.ndarray]
"""``(target crop, swapped crop, frame → crop matrix, target face) → P×P mask in [0, 1]``."""

BoostChoice = int | str
_CACHE_SIZE = 8


class NeuralSwapper:
    """Runs one swapper file of any family in ``SWAPPER_FAMILIES``; one instance serves
    every job of a worker (the session is thread-safe, the state read-only)."""

    def __init__(
        self,
        sessions: SessionCache,
        spec: ModelSpec,
        path: str | Path,
        converter: Converter | None = None,
    ) -> None:
        family = SWAPPER_FAMILIES.get(spec.family)
        if family is None:
            raise ModelUnavailable(
                f"model {spec.name}: {spec.family!r} is not a swapper family "
                f"(known: {', '.join(sorted(SWAPPER_FAMILIES))})"
            )
        if family.needs_converter and converter is None:
            raise ModelUnavailable(
                f"model {spec.name} (family {family.name}) needs its identity converter "
                f"{spec.converter or '(none named)'}; install it first"
            )
        self.name = spec.name
        self.family = family.name
        self.needs_embedding = family.needs_embedding
        self._processing = family
        self._converter = converter if family.needs_converter else None
        self.path = Path(path)
        self.session = sessions.get(self.path)
        bound = bind_session(spec.name, family.name, swapper_io(family), self.session)
        self._target, self._source = bound.inputs
        self._output = bound.outputs[0]
        self.native_size = self._native_size(spec)
        self._check_output()
        self.batched = _dynamic_batch(self._target) and _dynamic_batch(self._source)
        self.mean = np.asarray(spec.mean or family.mean, dtype=np.float32)
        self.std = np.asarray(spec.std or family.std, dtype=np.float32)
        if self.mean.shape != (3,) or self.std.shape != (3,) or not np.all(self.std > 0):
            raise ModelUnavailable(
                f"model {spec.name}: mean/std must be three numbers per RGB channel, "
                f"std positive; got {spec.mean} / {spec.std}"
            )
        # x_rgb·scale + offset = (x/255 − mean)/std in; out: (y·std + mean)·255 or y·255.
        self._in_scale = 1.0 / (255.0 * self.std)
        self._in_offset = -self.mean / self.std
        denormalise = family.denormalise
        self._out_scale = 255.0 * (self.std if denormalise else np.ones(3, np.float32))
        self._out_offset = 255.0 * (self.mean if denormalise else np.zeros(3, np.float32))
        self.boost_sizes = tuple(
            k * self.native_size for k in range(1, MAX_PIXEL_BOOST // self.native_size + 1)
        ) or (self.native_size,)
        self._emap = load_emap(self.path) if family.source == "emap" else None
        self._source_size = self._source.dim(2, family.source_size)
        if family.source == "image" and self._source.dim(3, self._source_size) != self._source_size:
            raise ModelUnavailable(
                f"model {spec.name} (family {family.name}): input {self._source.name!r} has "
                f"shape {list(self._source.shape or ())}, expected a square source face crop"
            )
        self._cache: OrderedDict[tuple, tuple[object, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------

    def _native_size(self, spec: ModelSpec) -> int:
        """M: the file's target size; the catalogue's where the file leaves it dynamic."""
        fallback = spec.input_size if isinstance(spec.input_size, int) else None
        fallback = fallback or self._processing.default_size
        height, width = self._target.dim(2, fallback), self._target.dim(3, fallback)
        if height != width:
            raise ModelUnavailable(
                f"model {self.name} (family {self.family}): input {self._target.name!r} "
                f"is {height}x{width}, expected a square crop"
            )
        return height

    def _check_output(self) -> None:
        size = self.native_size
        shape = self._output.shape
        if shape is None:
            return
        for axis, want in ((1, 3), (2, size), (3, size)):
            have = shape[axis] if axis < len(shape) else None
            if have is not None and have != want:
                raise ModelUnavailable(
                    f"model {self.name} (family {self.family}): output {self._output.name!r} "
                    f"has shape {list(shape)}, expected [?, 3, {size}, {size}] like its input"
                )

    # -- the identity ----------------------------------------------------------------------

    def source_input(
        self,
        source: SourceIdentity,
        target_embedding: np.ndarray | None = None,
        weight: float = NEUTRAL_WEIGHT,
    ) -> np.ndarray:
        """The family's ``source`` tensor, batch 1 (MODELS-2.md §5.2, identity weight §5.4).

        Embedding families: [1, 512]; image families: the first source face aligned with
        the family's source template, RGB /255, [1, 3, S, S] (the weight does not apply).
        """
        family = self._processing
        if family.source == "image":
            balance(weight)  # still a checked option
            image, face = source.first_source()
            blob = source_crop_input(image, face, family.source_template, self._source_size)
            return blob.astype(self._source.dtype)
        if source.embedding is None:
            raise InvalidInput(
                f"{self.name} needs the source face's embedding; run the recognizer first"
            )
        raw = mix_identity(source.embedding, target_embedding, weight)
        if family.source == "emap":
            vector = emap_latent(raw, self._emap)
        elif family.source == "embedding_norm":
            vector = l2_normalise(raw)
        else:
            converted = self._converter.convert(raw)
            vector = l2_normalise(converted) if family.source == "converter_norm" else converted
        return np.asarray(vector).reshape(1, -1).astype(self._source.dtype)

    def _cached_source_input(
        self, source: SourceIdentity, target_embedding: np.ndarray | None, weight: float
    ) -> np.ndarray:
        """``source_input``, remembered per source: for embedding families the job's
        identity at the neutral weight (the converter would otherwise run once per face
        per frame), for image families the aligned source face (warped once per job, not
        once per face per frame)."""
        if self._processing.source == "image":
            balance(weight)  # still a checked option
            image, face = source.first_source()
            points = np.asarray(face.landmarks)
            # The entry keeps the image alive, so its id() cannot be reused while cached.
            key = ("image", id(image), points.tobytes(), image.shape)
            return self._remember(key, image, lambda: self.source_input(source, None, weight))
        if source.embedding is None or balance(weight):
            return self.source_input(source, target_embedding, weight)
        key = ("embedding", np.asarray(source.embedding, dtype=np.float32).tobytes())
        return self._remember(key, None, lambda: self.source_input(source, None, weight))

    def _remember(self, key: tuple, owner: object, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached value for ``key`` (made by ``compute`` on a miss; LRU of
        ``_CACHE_SIZE``); ``owner`` is kept with it and must be the same object on a hit."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] is owner:
                self._cache.move_to_end(key)
                return hit[1]
        value = compute()
        value.setflags(write=False)
        with self._lock:
            self._cache[key] = (owner, value)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    # -- the face --------------------------------------------------------------------------

    def boost_size(self, face: Face, choice: BoostChoice) -> int:
        """The crop size P for ``face``: ``choice`` if it is one of ``boost_sizes``, or for
        ``"auto"`` the smallest one at least as large as the face on the template's scale
        (M / the scale of the native-size crop), so small faces run at M and large ones
        keep their detail; capped at the largest (≤ 1024)."""
        if isinstance(choice, str):
            if choice != "auto":
                raise InvalidOptions(
                    f"pixel boost must be 'auto' or one of {list(self.boost_sizes)} for "
                    f"{self.name}, got {choice!r}"
                )
            matrix = estimate_affine(_landmarks(face), self._processing.template, self.native_size)
            scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
            face_size = self.native_size / max(scale, 1e-9)
            return next((s for s in self.boost_sizes if s >= face_size), self.boost_sizes[-1])
        if isinstance(choice, bool) or not isinstance(choice, int | np.integer):
            raise InvalidOptions(f"pixel boost must be an integer size or 'auto', got {choice!r}")
        if int(choice) not in self.boost_sizes:
            raise InvalidOptions(
                f"pixel boost {choice} is not available for {self.name} (native size "
                f"{self.native_size}): choose one of {list(self.boost_sizes)} or 'auto'"
            )
        return int(choice)

    def swap_crop(self, crop: np.ndarray, source_input: np.ndarray) -> np.ndarray:
        """Swap a P×P BGR uint8 crop (P = k·M) into a P×P BGR **uint8** crop (rounded).

        The k² sub-images run in one batch when the file allows it, else one by one.
        """
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3:
            raise InvalidInput("the crop must be a BGR uint8 image array")
        size = crop.shape[0]
        if crop.shape != (size, size, 3) or size % self.native_size:
            raise InvalidInput(
                f"{self.name}: the crop must be P×P×3 with P a multiple of {self.native_size}, "
                f"got {crop.shape}"
            )
        k = size // self.native_size
        blob = implode_blob(crop, k, self._in_scale, self._in_offset)
        outputs = self._run(blob.astype(self._target.dtype, copy=False), source_input)
        return explode_bgr(outputs, k, self._out_scale, self._out_offset)

    def _run(self, blob: np.ndarray, source_input: np.ndarray) -> list[np.ndarray]:
        """The network's (3, M, M) output for each sub-image of ``blob``, in order (not
        concatenated: the merge reads them where they are)."""
        source_input = np.asarray(source_input, dtype=self._source.dtype)
        count = len(blob)
        steps = [slice(0, count)] if self.batched else [slice(i, i + 1) for i in range(count)]
        size = self.native_size
        outputs: list[np.ndarray] = []
        sources = {1: source_input[:1]}  # per batch length, made once (not per run)
        for step in steps:
            batch = blob[step]
            if len(batch) not in sources:
                sources[len(batch)] = np.repeat(source_input[:1], len(batch), axis=0)
            feed = {self._target.name: batch, self._source.name: sources[len(batch)]}
            output = np.asarray(self.session.run([self._output.name], feed)[0])
            if output.shape != (len(batch), 3, size, size):
                raise ModelUnavailable(
                    f"model {self.name} (family {self.family}): output {self._output.name!r} "
                    f"came back with shape {list(output.shape)}, expected "
                    f"[{len(batch)}, 3, {size}, {size}]"
                )
            outputs.extend(output)
        return outputs

    def swap(
        self,
        frame: np.ndarray,
        target: Face,
        source: SourceIdentity,
        options: SwapOptions,
        *,
        size: BoostChoice | None = None,
        weight: float | None = None,
        target_embedding: np.ndarray | None = None,
        mask_builder: MaskBuilder | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """A new frame with ``target`` swapped; pixels outside the mask are unchanged.

        ``size``: the pixel-boost size (an entry of ``boost_sizes`` or ``"auto"``; None =
        the native size). ``weight``: the identity weight (0.5 = the source as is; None =
        ``options.swapper_weight``, else 0.5); ``target_embedding`` defaults to
        ``target.embedding``. ``mask_builder`` replaces
        the box mask (options ``mask_blur``/``mask_padding``). ``out``: write the result
        there instead of into a copy of ``frame`` (``frame`` itself when the caller owns
        it, e.g. for the next face of the same frame: saves a frame copy per face).
        """
        _check_frame(frame)
        points = _landmarks(target)
        crop_size = self.native_size if size is None else self.boost_size(target, size)
        if weight is None:
            weight = getattr(options, "swapper_weight", NEUTRAL_WEIGHT)
        if target_embedding is None:
            target_embedding = target.embedding
        identity = self._cached_source_input(source, target_embedding, weight)
        crop, matrix = warp_face(frame, points, self._processing.template, crop_size)
        swapped = self.swap_crop(crop, identity)
        if mask_builder is None:
            mask = box_mask(crop_size, options.mask_blur, options.mask_padding)
        else:
            mask = np.asarray(mask_builder(crop, swapped, matrix, target), dtype=np.float32)
            if mask.shape != (crop_size, crop_size):
                raise InvalidInput(
                    f"the mask builder returned shape {mask.shape}, expected "
                    f"({crop_size}, {crop_size})"
                )
        # The colour correction is applied by the paste, after the warp when that is cheaper.
        color = color_map(swapped, crop, mask) if options.color_correction else None
        paste = seamless_paste if options.blend_mode == "poisson" else paste_back
        return paste(frame, swapped, matrix, mask, color=color, out=out)


def _dynamic_batch(tensor: Tensor) -> bool:
    return tensor.shape is not None and len(tensor.shape) > 0 and tensor.shape[0] is None


def _landmarks(face: Face) -> np.ndarray:
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise InvalidInput(f"the target face needs five finite landmarks, got {points.shape}")
    return points


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise InvalidInput("the target frame must be a BGR uint8 image array")
    if frame.shape[2] != 3:
        raise InvalidInput(f"the target frame must have shape (H, W, 3), got {frame.shape}")
