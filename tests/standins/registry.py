"""Install stand-in models under their real registry names, with their own real checksums.

The manager then runs its normal checksum check on them, so the loading code
is exactly the code that loads the real downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from engine.models.manager import ModelManager
from engine.models.registry import REGISTRY
from tests.standins.arcface import make_arcface
from tests.standins.gfpgan import make_gfpgan
from tests.standins.inswapper import make_inswapper
from tests.standins.scrfd import make_scrfd

MAKERS = {
    "arcface_w600k_r50": make_arcface,
    "inswapper_128": make_inswapper,
    "gfpgan_1.4": make_gfpgan,
    "scrfd_2.5g": make_scrfd,
}


def install_standins(models_dir: Path, names: tuple[str, ...]) -> ModelManager:
    """Write stand-ins for ``names`` into ``models_dir``; return a manager that trusts them."""
    models_dir.mkdir(parents=True, exist_ok=True)
    registry = dict(REGISTRY)
    for name in names:
        spec = REGISTRY[name]
        path = MAKERS[name](models_dir / spec.filename)
        data = Path(path).read_bytes()
        registry[name] = dataclasses.replace(
            spec, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
        )
    return ModelManager(models_dir, registry)
