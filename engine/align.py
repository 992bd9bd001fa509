"""Five-point face alignment: the templates of MODELS.md §6 and the similarity warp.

Every model that takes an aligned crop (ArcFace 112, inswapper 128, GFPGAN 512)
and the classic swapper go through ``estimate_affine`` and ``warp_face``, so a
crop and its paste-back always use the same matrix.
"""

from __future__ import annotations

import cv2
import numpy as np

# Normalised templates (x, y in [0, 1]); multiply by the crop size.
TEMPLATES: dict[str, np.ndarray] = {
    "arcface_112_v1": np.array(
        [
            [0.35473214, 0.45658929],
            [0.64526786, 0.45658929],
            [0.50000000, 0.61154464],
            [0.37913393, 0.77687500],
            [0.62086607, 0.77687500],
        ],
        dtype=np.float32,
    ),
    "arcface_112_v2": np.array(
        [
            [0.34191607, 0.46157411],
            [0.65653393, 0.45983393],
            [0.50022500, 0.64050536],
            [0.37097589, 0.82469196],
            [0.63151696, 0.82325089],
        ],
        dtype=np.float32,
    ),
    "arcface_128": np.array(
        [
            [0.36167656, 0.40387734],
            [0.63696719, 0.40235469],
            [0.50019687, 0.56044219],
            [0.38710391, 0.72160547],
            [0.61507734, 0.72034453],
        ],
        dtype=np.float32,
    ),
    "ffhq_512": np.array(
        [
            [0.37691676, 0.46864664],
            [0.62285697, 0.46912813],
            [0.50123859, 0.61331904],
            [0.39308822, 0.72541100],
            [0.61150205, 0.72490465],
        ],
        dtype=np.float32,
    ),
    "mtcnn_512": np.array(
        [
            [0.36562865, 0.46733799],
            [0.63305391, 0.46585885],
            [0.50019127, 0.61942959],
            [0.39032951, 0.77598822],
            [0.61178945, 0.77476328],
        ],
        dtype=np.float32,
    ),
}

# Below this scale (frame → crop) a bilinear warp, which reads 2×2 frame pixels per crop
# pixel, skips frame pixels and aliases; the frame region is then first reduced with
# INTER_AREA (which warpAffine ignores). Above it, the warp is left exactly as the
# reference implementations make it (insightface's crops, which the networks saw).
PREFILTER_BELOW = 0.5


def template_points(template: str, size: int) -> np.ndarray:
    """Template landmarks in pixels for a square crop of ``size``."""
    return TEMPLATES[template] * np.float32(size)


def estimate_affine(landmarks: np.ndarray, template: str, size: int) -> np.ndarray:
    """2×3 similarity transform (rotation, uniform scale, translation) frame → crop.

    Least-squares Umeyama estimate, the same as insightface's
    ``skimage.transform.SimilarityTransform`` (no RANSAC: five points are exact).
    """
    src = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    dst = template_points(template, size).astype(np.float64)
    return umeyama(src, dst)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991)."""
    n = src.shape[0]
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float64)
    if rank == 1:
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            rotation = u @ vt
        else:
            d_last = d[-1]
            d[-1] = -1
            rotation = u @ np.diag(d) @ vt
            d[-1] = d_last
    else:
        rotation = u @ np.diag(d) @ vt
    src_var = src_c.var(axis=0).sum()
    scale = (s @ d) / src_var if src_var > 0 else 1.0
    matrix = np.zeros((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp_face(
    frame: np.ndarray, landmarks: np.ndarray, template: str, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned square crop of a face and the frame → crop matrix used to make it."""
    matrix = estimate_affine(landmarks, template, size)
    return warp_crop(frame, matrix, size), matrix


def warp_crop(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size``² crop that ``matrix`` (frame → crop) cuts, without aliasing.

    A face much larger than its crop is first shrunk with ``INTER_AREA`` (only the
    region the crop reads), so that each crop pixel averages the frame pixels under
    it; the remaining warp is then near scale 1. Faces at or below crop scale are
    warped directly.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= PREFILTER_BELOW or scale <= 0:
        return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    margin = 2.0 / scale
    height, width = frame.shape[:2]
    x0 = max(int(np.floor(points[:, 0].min() - margin)), 0)
    y0 = max(int(np.floor(points[:, 1].min() - margin)), 0)
    x1 = min(int(np.ceil(points[:, 0].max() + margin)), width)
    y1 = min(int(np.ceil(points[:, 1].max() + margin)), height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    small_w = max(int(round((x1 - x0) * scale)), 1)
    small_h = max(int(round((y1 - y0) * scale)), 1)
    small = cv2.resize(frame[y0:y1, x0:x1], (small_w, small_h), interpolation=cv2.INTER_AREA)
    fx, fy = small_w / (x1 - x0), small_h / (y1 - y0)
    # cv2.resize maps pixel centres: a frame point p sits at q = (p − o + ½)·f − ½ in
    # ``small`` (o = (x0, y0)), so p = q/f + o + ½/f − ½.
    reduced = matrix.copy()
    reduced[:, 0] = matrix[:, 0] / fx
    reduced[:, 1] = matrix[:, 1] / fy
    origin = np.array([x0 + 0.5 / fx - 0.5, y0 + 0.5 / fy - 0.5], dtype=np.float64)
    reduced[:, 2] = matrix[:, :2] @ origin + matrix[:, 2]
    return cv2.warpAffine(small, reduced, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]
