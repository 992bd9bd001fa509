"""Where Fusion Studio keeps its data (jobs, models, keys) when no flag says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

SPACES_PERSISTENT_DIR = Path("/data")


def default_data_dir() -> Path:
    """``$FUSION_DATA_DIR``, else ``/data`` on a Hugging Face Space, else ``./data``.

    A Space with persistent storage mounts it at ``/data``; everything else on a
    Space is lost on restart, so jobs must live there when it exists.
    """
    configured = os.environ.get("FUSION_DATA_DIR")
    if configured:
        return Path(configured)
    if os.environ.get("SPACE_ID") and SPACES_PERSISTENT_DIR.is_dir():
        return SPACES_PERSISTENT_DIR / "fusion-studio"
    return Path("data")
