"""Face enhancers: GFPGAN, CodeFormer, GPEN-BFR and RestoreFormer++ as one ONNX runner.

The four families share FaceFusion's processing (MODELS-2.md §8), so one class runs
them all; what differs is data: the native crop size S (read from the file) and the
alignment template (``engine.families.table.ENHANCER_FAMILIES``: ``ffhq_512``, except
``arcface_128`` for GPEN-BFR 256).

- In: the face aligned to the template at S×S, BGR→RGB, x/255, (x − 0.5)/0.5, NCHW,
  into ``input`` (cast to float16 where the file declares it). A file that declares an
  input named ``weight`` (CodeFormer's fidelity w) also gets the fidelity, as an array
  of the declared type (float64 per §3) of shape [1]; other files are fed without it.
- Out: output 0 → [0], clipped to [−1, 1], (x + 1)/2·255, rounded, uint8, RGB→BGR.
- Paste: FaceFusion's box mask with padding forced to 0 and the blur from the job
  (§6.4), or a caller's mask (occlusion), pasted back with ``engine.paste.paste_back``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from engine.align import warp_face
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.families.io import Tensor, bind_session
from engine.families.table import ENHANCER_FAMILIES, ENHANCER_IO, EnhancerFamily
from engine.masks.box import box_mask
from engine.models.registry import ModelSpec
from engine.paste import paste_back
from engine.runtime import SessionCache

MaskBuilder = Callable[[np.ndarray, np.ndarray, np.ndarray, Face], np.ndarray]
"""``(crop, restored, matrix, face) -> S×S float mask in 0..1`` (replaces the box mask)."""

DEFAULT_FIDELITY = 0.5  # FaceFusion's --face-enhancer-weight default (§8)
WEIGHT_INPUT = "weight"
_NUMPY_TYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


class FaceEnhancer:
    """Runs one face-enhancer file on one face at a time; shared by a worker's jobs.

    ``name``/``family``: the catalogue entry's; ``size``: the native crop size S;
    ``template``: the alignment template used at S; ``has_fidelity``: whether the file
    declares the ``weight`` input (only those files react to ``fidelity``).
    """

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        family = ENHANCER_FAMILIES.get(spec.family)
        if family is None:
            raise ModelUnavailable(
                f"model {spec.name}: family {spec.family!r} is not a face enhancer family "
                f"({', '.join(sorted(ENHANCER_FAMILIES))})"
            )
        self.name = spec.name
        self.family = family.name
        self.path = Path(path)
        self.session = sessions.get(self.path)
        bound = bind_session(spec.name, spec.family, ENHANCER_IO, self.session)
        image = bound.inputs[0]
        self.size = _native_size(spec, family, image)
        self.template = (
            family.small_template if self.size == 256 and family.small_template else family.template
        )
        self._input_name = image.name
        self._input_dtype = np.float16 if image.dtype == "float16" else np.float32
        self._output = bound.outputs[0]
        self._check_output(self._output)
        weight = bound.optional.get(WEIGHT_INPUT)
        self.has_fidelity = weight is not None
        self._weight_shape = _weight_shape(spec.name, weight) if weight is not None else (1,)
        self._weight_dtype = _NUMPY_TYPES[weight.dtype] if weight is not None else np.float64

    def enhance(
        self,
        frame: np.ndarray,
        face: Face,
        *,
        blend: float,
        fidelity: float = DEFAULT_FIDELITY,
        mask_blur: float = 0.3,
        mask_builder: MaskBuilder | None = None,
    ) -> np.ndarray:
        """A new frame with ``face`` restored, mixed over the original by ``blend`` (0..1).

        FaceFusion pastes at full strength and then mixes the whole frame with
        ``cv2.addWeighted(frame, 1 − blend, pasted, blend)``; here the mask is scaled by
        ``blend`` instead. Inside the face the two are the same (frame·(1 − blend·m) +
        restored·blend·m), and every pixel the mask does not reach stays bit for bit as
        it was (addWeighted would re-round them). ``blend`` 0 returns an identical copy.
        ``mask_builder`` replaces the box mask (e.g. box ∧ occlusion, §6.4).
        """
        _check_unit("enhancer_blend", blend)
        _check_unit("enhancer_fidelity", fidelity)
        _check_frame(frame)
        points = np.asarray(face.landmarks, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise InvalidInput(f"the face needs five finite landmarks, got shape {points.shape}")
        if blend == 0.0:
            return frame.copy()
        crop, matrix = warp_face(frame, points, self.template, self.size)
        restored = self.restore(crop, fidelity=fidelity)
        if mask_builder is None:
            mask = box_mask(self.size, mask_blur, 0.0)
        else:
            mask = np.asarray(mask_builder(crop, restored, matrix, face), dtype=np.float32)
            if mask.shape != (self.size, self.size) or not np.isfinite(mask).all():
                raise InvalidInput(
                    f"the enhancer mask must be finite and {self.size}x{self.size}, "
                    f"got shape {mask.shape}"
                )
        return paste_back(frame, restored, matrix, mask * np.float32(blend))

    def restore(self, crop: np.ndarray, *, fidelity: float = DEFAULT_FIDELITY) -> np.ndarray:
        """Run the model on an aligned S×S BGR uint8 crop; returns the restored BGR crop."""
        size = self.size
        if not isinstance(crop, np.ndarray) or crop.shape != (size, size, 3):
            raise InvalidInput(
                f"{self.name} needs a {size}x{size} BGR uint8 crop, got {np.shape(crop)}"
            )
        if crop.dtype != np.uint8:
            raise InvalidInput(
                f"{self.name} needs a {size}x{size} BGR uint8 crop, got {crop.dtype}"
            )
        _check_unit("enhancer_fidelity", fidelity)
        # (x − 127.5)/127.5 = (x/255 − 0.5)/0.5, RGB, NCHW float32.
        blob = cv2.dnn.blobFromImage(crop, 1.0 / 127.5, mean=(127.5, 127.5, 127.5), swapRB=True)
        feed = {self._input_name: blob.astype(self._input_dtype, copy=False)}
        if self.has_fidelity:
            feed[WEIGHT_INPUT] = np.full(self._weight_shape, fidelity, dtype=self._weight_dtype)
        output = np.asarray(self.session.run([self._output.name], feed)[0])
        if output.ndim != 4 or output.shape[1:] != (3, size, size) or output.shape[0] < 1:
            raise ModelUnavailable(
                f"model {self.name}: output {self._output.name!r} has shape {list(output.shape)}, "
                f"expected [1, 3, {size}, {size}]"
            )
        # clip(x, −1, 1) → (x + 1)·127.5, rounded, as one saturating convert per plane
        # (RGB planes merged as BGR): several times faster than the numpy steps.
        planes = np.asarray(output[0], dtype=np.float32)[::-1]
        return cv2.merge(
            [cv2.addWeighted(p, 127.5, p, 0.0, 127.5, dtype=cv2.CV_8U) for p in planes]
        )

    def _check_output(self, output: Tensor) -> None:
        for axis in (2, 3):
            if output.dim(axis, self.size) != self.size:
                raise ModelUnavailable(
                    f"model {self.name}: output {output.name!r} has shape {list(output.shape or ())}"
                    f", expected [1, 3, {self.size}, {self.size}] like its input"
                )


def _native_size(spec: ModelSpec, family: EnhancerFamily, image: Tensor) -> int:
    """S from the file's input; where the file leaves it dynamic, the catalogue's, then
    the family's."""
    declared = {image.shape[axis] for axis in (2, 3)} - {None} if image.shape else set()
    if len(declared) > 1:
        raise ModelUnavailable(
            f"model {spec.name}: input {image.name!r} has shape {list(image.shape or ())}, "
            "expected a square [1, 3, S, S]"
        )
    if declared:
        return int(declared.pop())  # type: ignore[arg-type]
    size = spec.input_size
    if isinstance(size, tuple) and size:
        size = size[-1]
    return int(size) if isinstance(size, int) and size > 0 else family.default_size


def _weight_shape(model: str, weight: Tensor) -> tuple[int, ...]:
    """The declared shape of ``weight`` with dynamic axes as 1; it must hold one value."""
    shape = (1,) if weight.shape is None else tuple(d or 1 for d in weight.shape)
    if int(np.prod(shape)) != 1 or weight.dtype not in _NUMPY_TYPES:
        raise ModelUnavailable(
            f"model {model}: input {weight.name!r} has shape {list(weight.shape or ())} and type "
            f"{weight.dtype}, expected one float value (float64 [1])"
        )
    return shape


def _check_unit(option: str, value: float) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise InvalidOptions(f"{option} must be between 0 and 1; got {value!r}")


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise InvalidInput("the frame to enhance must be a BGR uint8 image array")
    if frame.shape[2] != 3:
        raise InvalidInput(f"the frame to enhance must have shape (H, W, 3), got {frame.shape}")
