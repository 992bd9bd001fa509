"""Enhancers: models that restore a face (``face``) after a swap.

``FaceEnhancer`` runs every face-enhancer family of the catalogue (gfpgan, codeformer,
gpen, restoreformer); the family's numbers live in ``engine.families.table``.
"""

from engine.enhancers.face import DEFAULT_FIDELITY, FaceEnhancer, MaskBuilder

__all__ = ["DEFAULT_FIDELITY", "FaceEnhancer", "MaskBuilder"]
