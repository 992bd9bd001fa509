"""Zero-lag smoothing of whole face tracks, after the analysis pass has seen the video.

The tracker's filters are causal: steadier means later. The analysis pass, though, has
every frame of a track before any segment swaps, so each track can be smoothed with
a zero-phase filter (a local polynomial fit, Gaussian-weighted, over past *and* future
frames): no lag, and accelerations are kept (a quadratic path passes unchanged).

Rigid motion and shape are smoothed apart. Per frame a similarity transform (scale,
rotation, translation; the complex-number form of Umeyama's fit) maps the track's mean
5-point shape onto that frame's landmarks, the eyes and nose weighing most since the
mouth corners move with the mouth. The similarity's parameters (centroid x/y,
log-scale, angle) are smoothed strongly; each frame's own shape in the track's
normalised frame only lightly (a mouth opening and closing keeps its motion). The
landmarks are rebuilt as smoothed similarity ∘ smoothed shape; the box follows the
same rigid correction, and so do the 68 points (then each lightly smoothed). Tracks
are split at scene cuts and at gaps; pieces shorter than ``MIN_FRAMES`` are left as
they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.tracking.analysis import FaceRows

MIN_FRAMES = 5
# fit weights of the 5 landmarks (eyes, nose, mouth corners): the mouth corners move
# with the mouth, so the rigid fit leaves them out (a mouth opening would otherwise
# read as the face growing and moving down, and be smoothed away)
FIT_WEIGHTS = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
# rigid motion that the strong fit rounds off by more than this many times the
# landmarks' noise is followed (fully from FOLLOW_FULL): a quick head movement, not noise
FOLLOW_FROM, FOLLOW_FULL = 1.0, 2.0


@dataclass(frozen=True)
class OfflineParams:
    """Gaussian σ (frames) of the local fits: ``rigid`` (quadratic) for the similarity's
    parameters, ``shape`` (quartic) for the non-rigid remainder (0 = not smoothed)."""

    rigid: float
    shape: float

    @classmethod
    def from_strength(cls, strength: float) -> OfflineParams:
        """``temporal_smoothing`` → σ. The shape's σ stays small enough to keep ≥ 90 % of
        a mouth opening and closing every 10 frames (2.5 Hz at 25 fps)."""
        strength = float(strength)
        if strength <= 0.0:
            return cls(0.0, 0.0)
        return cls(rigid=12.0 * strength, shape=min(2.0, 6.7 * strength))


def local_polynomial(values: np.ndarray, sigma: float, order: int = 2) -> np.ndarray:
    """``values`` (n × d, one row per frame) smoothed by a Gaussian-weighted local
    polynomial fit at every frame (zero phase; at the ends the window is one-sided).
    Order 2 passes any quadratic (constant acceleration) unchanged; order 4 keeps more
    of a fast oscillation for the same noise."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    order = min(order, n - 1)
    if sigma <= 0.0 or order < 1:
        return values.copy()
    half = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-half, half + 1)
    index = np.arange(n)[:, None] + offsets[None, :]  # n × w
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)[None, :] * ((index >= 0) & (index < n))
    powers = offsets[:, None].astype(np.float64) ** np.arange(order + 1)[None, :]  # w × p
    normal = np.einsum("nw,wp,wq->npq", weights, powers, powers)
    taken = values[np.clip(index, 0, n - 1)]  # n × w × d
    rhs = np.einsum("nw,wp,nwd->npd", weights, powers, taken)
    return np.linalg.solve(normal, rhs)[:, 0, :]


def _follow_fast(raw: np.ndarray, smooth: np.ndarray, sigma: float, noise: float) -> np.ndarray:
    """``smooth`` plus what it rounded off where that stands out of the noise: the part
    of ``raw − smooth`` left by a light fit (σ ``sigma``) is added back where it is over
    ``FOLLOW_FROM`` times ``noise`` (px, as every column here), fully from
    ``FOLLOW_FULL`` times. A quick nod or shake is followed; noise stays smoothed."""
    fast = local_polynomial(raw - smooth, sigma, 4)
    weight = np.clip((np.abs(fast) / noise - FOLLOW_FROM) / (FOLLOW_FULL - FOLLOW_FROM), 0, 1)
    return smooth + weight * fast


def _smooth_complex(values: np.ndarray, sigma: float, order: int) -> np.ndarray:
    """``local_polynomial`` of complex columns (n × k)."""
    k = values.shape[1]
    smoothed = local_polynomial(np.concatenate([values.real, values.imag], 1), sigma, order)
    return smoothed[:, :k] + 1j * smoothed[:, k:]


def _similarity(shape: np.ndarray, points: np.ndarray, weights: np.ndarray):
    """Per frame the complex scale·rotation ``a`` and centre ``b`` with points ≈ a·shape + b
    (weighted least squares); ``shape`` (k,) complex, centred on its weighted mean."""
    w = weights / weights.sum()
    centre = (points * w).sum(axis=1)
    a = (np.conj(shape) * (points - centre[:, None]) * w).sum(axis=1) / (
        (np.abs(shape) ** 2 * w).sum()
    )
    return a, centre


def smooth_track(
    landmarks: np.ndarray, params: OfflineParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One unbroken piece of a track: its 5-point landmarks (n × 5 × 2) smoothed, and the
    per-frame rigid correction that maps a measured point z to ``ratio·(z − centre) +
    new_centre`` — returned as (landmarks, ratio (n, complex), shift pair (centre,
    new_centre) stacked as (n × 2) complex)."""
    points = landmarks[..., 0].astype(np.float64) + 1j * landmarks[..., 1].astype(np.float64)
    weights = FIT_WEIGHTS
    mean = points[0] - (points[0] * weights).sum() / weights.sum()
    for _ in range(2):  # the mean shape: frames aligned onto a reference, averaged
        a, centre = _similarity(mean, points, weights)
        aligned = (points - centre[:, None]) / a[:, None]
        mean = aligned.mean(axis=0)
        mean = mean - (mean * weights).sum() / weights.sum()
        mean = mean / np.sqrt((np.abs(mean) ** 2 * weights).sum() / weights.sum())
    a, centre = _similarity(mean, points, weights)
    # the landmarks' noise (px), from what the similarity leaves of eyes and nose (2 of
    # their 6 coordinates); a χ² with 2 degrees of freedom has its median at 1.386
    left = np.abs(points[:, :3] - (a[:, None] * mean[:3] + centre[:, None])) ** 2
    noise = float(np.sqrt(np.median(left.sum(axis=1)) / 1.386)) + 1e-6
    unit = float(np.median(np.abs(a)))  # px per unit of log-scale and angle (radians)
    rigid = np.stack(
        [centre.real, centre.imag, unit * np.log(np.abs(a)), unit * np.unwrap(np.angle(a))], 1
    )
    rigid = _follow_fast(rigid, local_polynomial(rigid, params.rigid, 2), params.shape, noise)
    rigid[:, 2:] /= unit
    new_a = np.exp(rigid[:, 2] + 1j * rigid[:, 3])
    new_centre = rigid[:, 0] + 1j * rigid[:, 1]
    # each frame's own shape, as its offset from the mean shape carried by the smoothed
    # similarity (taken there, not through the frame's own noisy fit, whose rotation
    # and scale noise would reach the far mouth corners). Eyes and nose hardly move
    # but with a turn of the head: smoothed like the rigid motion; the mouth corners
    # lightly, so that the mouth keeps its motion
    carried = new_a[:, None] * mean[None, :] + new_centre[:, None]
    offset = points - carried
    steady = _smooth_complex(offset[:, :3], params.rigid, 2)
    # the mouth corners in the face's upright frame: how far the mouth opens and how
    # wide it is move with speech (lightly smoothed); where it sits sideways and how
    # it tilts hardly do (smoothed like the rigid motion)
    upright = offset[:, 3:] * np.exp(-1j * rigid[:, 3])[:, None]
    left, right = upright[:, 0], upright[:, 1]
    fast = _smooth_complex(
        np.stack([(left.imag + right.imag) / 2, (right.real - left.real) / 2], 1) + 0j,
        params.shape,
        4,
    ).real
    slow = _smooth_complex(
        np.stack([(left.real + right.real) / 2, (right.imag - left.imag) / 2], 1) + 0j,
        params.rigid,
        2,
    ).real
    left = (slow[:, 0] - fast[:, 1]) + 1j * (fast[:, 0] - slow[:, 1])
    right = (slow[:, 0] + fast[:, 1]) + 1j * (fast[:, 0] + slow[:, 1])
    mouth = np.stack([left, right], 1) * np.exp(1j * rigid[:, 3])[:, None]
    rebuilt = carried + np.concatenate([steady, mouth], axis=1)
    out = np.stack([rebuilt.real, rebuilt.imag], axis=-1)
    return out, new_a / a, np.stack([centre, new_centre], axis=1)


def _pieces(positions: np.ndarray, cut_positions: np.ndarray) -> list[slice]:
    """Runs of consecutive analysed-frame positions not crossing a cut."""
    breaks = np.diff(positions) != 1
    shot = np.searchsorted(cut_positions, positions, side="right")
    breaks |= np.diff(shot) != 0
    edges = np.concatenate([[0], np.flatnonzero(breaks) + 1, [len(positions)]])
    return [slice(int(s), int(e)) for s, e in zip(edges[:-1], edges[1:], strict=True)]


def _correct(points: np.ndarray, ratio: complex, centres: np.ndarray) -> np.ndarray:
    z = points[..., 0].astype(np.float64) + 1j * points[..., 1].astype(np.float64)
    z = ratio * (z - centres[0]) + centres[1]
    return np.stack([z.real, z.imag], axis=-1)


def _smooth_many(
    many: np.ndarray, ratio: np.ndarray, centres: np.ndarray, sigma: float
) -> np.ndarray:
    """A piece's 68 points (n × 68 × 2), rigidly corrected like the 5 points, then each
    point lightly smoothed (a quadratic fit of σ ``sigma``: steadier at a track's ends
    than a quartic; keeps ~80 % of a 2.5 Hz blink or mouth movement at σ 2)."""
    z = many[..., 0] + 1j * many[..., 1]
    own = (z - centres[:, :1]) * ratio[:, None]  # rigidly corrected, about the new centre
    offset = own - own.mean(axis=0)
    light = _smooth_complex(offset, sigma, 2)
    out = own.mean(axis=0) + light + centres[:, 1:]
    return np.stack([out.real, out.imag], axis=-1)


def smooth_rows(
    rows: FaceRows, frames: np.ndarray, cuts: Sequence[int], strength: float
) -> FaceRows:
    """``rows`` with every track's landmarks, 68 points and box smoothed offline (see the
    module docstring); ``frames``: the analysed frame numbers (a frame missing from a
    track between two it has is a gap); strength 0 returns ``rows`` itself."""
    from dataclasses import replace

    params = OfflineParams.from_strength(strength)
    if params.rigid <= 0.0 or len(rows.track) == 0:
        return rows
    frames = np.asarray(frames, dtype=np.int64)
    positions_all = np.searchsorted(frames, rows.frame)
    cut_positions = np.searchsorted(frames, np.asarray(sorted(cuts), dtype=np.int64))
    landmarks = rows.landmarks.astype(np.float64).copy()
    box = rows.box.astype(np.float64).copy()
    many = rows.landmarks_68.astype(np.float64).copy()
    for track_id in np.unique(rows.track):
        members = np.flatnonzero(rows.track == track_id)
        members = members[np.argsort(rows.frame[members], kind="stable")]
        for piece in _pieces(positions_all[members], cut_positions):
            chosen = members[piece]
            if len(chosen) < MIN_FRAMES:
                continue
            new, ratio, centres = smooth_track(rows.landmarks[chosen], params)
            landmarks[chosen] = new
            corners = box[chosen].reshape(-1, 2, 2)
            middle = corners.mean(axis=1)
            half = (corners[:, 1] - corners[:, 0]) / 2 * np.abs(ratio)[:, None]
            moved = _correct(middle[:, None, :], ratio[:, None], centres.T[:, :, None])[:, 0]
            box[chosen] = np.concatenate([moved - half, moved + half], axis=1)
            with68 = rows.row68[chosen] >= 0
            if with68.all():  # a landmarker ran on every frame: its shape lightly smoothed
                targets = rows.row68[chosen]
                many[targets] = _smooth_many(many[targets], ratio, centres, params.shape)
            elif with68.any():
                targets = rows.row68[chosen][with68]
                many[targets] = _correct(
                    many[targets], ratio[with68][:, None], centres[with68].T[:, :, None]
                )
    return replace(
        rows,
        landmarks=landmarks.astype(np.float32),
        box=box.astype(np.float32),
        landmarks_68=many.astype(np.float32),
    )
