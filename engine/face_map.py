"""A source per face (``face_map``): which identity each target face receives.

Entries name a target face by its index in the first frame that has faces, counted
left to right (``face``), by a track of the video's analysis pass (``track``), or by
an uploaded reference image (``reference``: the faces closest to that image's largest
face, within ``reference_distance``). Faces no entry names are left untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import InvalidOptions
from engine.faces import Face
from engine.options import FaceMapEntry
from engine.swappers.base import SourceIdentity


def left_to_right(faces: Sequence[Face]) -> list[Face]:
    """Faces counted left to right by their box centre: the numbering used everywhere."""
    return sorted(faces, key=lambda face: float(face.box[0] + face.box[2]))


def check_indices(
    entries: Sequence[FaceMapEntry], sources: int, references: int, faces: int | None
) -> None:
    """Every index names something that was uploaded (and, when known, a face)."""
    for number, entry in enumerate(entries):
        for source in entry.source:
            if source >= sources:
                raise InvalidOptions(
                    f"face_map entry {number} names source {source}, but {sources} source "
                    f"image(s) were given (sources are counted from 0)"
                )
        if entry.kind == "reference" and entry.index >= references:
            raise InvalidOptions(
                f"face_map entry {number} names reference {entry.index}, but {references} "
                "reference image(s) were given (multipart field 'reference', counted from 0)"
            )
        if entry.kind == "face" and faces is not None and entry.index >= faces:
            raise InvalidOptions(
                f"face_map entry {number} names face {entry.index}, but the target's first "
                f"frame with faces has {faces} (counted left to right from 0)"
            )


@dataclass(frozen=True)
class FaceMapping:
    """The identities of a job's ``face_map``, prepared once."""

    by_face: dict[int, SourceIdentity] = field(default_factory=dict)
    by_track: dict[int, SourceIdentity] = field(default_factory=dict)
    by_reference: tuple[tuple[np.ndarray, SourceIdentity], ...] = ()
    reference_distance: float = 0.6

    def match_reference(self, embedding: np.ndarray | None) -> SourceIdentity | None:
        """The identity of the closest reference within ``reference_distance``."""
        if embedding is None or not self.by_reference:
            return None
        from engine.pipeline import cosine_distance

        distance, identity = min(
            ((cosine_distance(embedding, ref), identity) for ref, identity in self.by_reference),
            key=lambda pair: pair[0],
        )
        return identity if distance <= self.reference_distance else None

    def assign(self, faces: Sequence[Face]) -> list[tuple[Face, SourceIdentity]]:
        """Identities for the faces of one frame (an image, or the first frame of a stream
        without tracks): ``face`` entries by left-to-right index, then references."""
        assigned = []
        for index, face in enumerate(left_to_right(faces)):
            identity = self.by_face.get(index) or self.match_reference(face.embedding)
            if identity is not None:
                assigned.append((face, identity))
        return assigned
