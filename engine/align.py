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
}


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
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return crop, matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]
