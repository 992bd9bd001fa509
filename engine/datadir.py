"""Where Fusion Studio keeps its data (jobs, models, keys) when no flag says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

SPACES_PERSISTENT_DIR = Path("/data")
# Where a Space's persistent storage is mounted (tests point it elsewhere).
SPACES_PERSISTENT_ENV = "FUSION_SPACES_PERSISTENT_DIR"


def default_data_dir() -> Path:
    """``$FUSION_DATA_DIR``, else ``/data`` on a Hugging Face Space, else ``./data``.

    A Space with persistent storage mounts it at ``/data``; everything else on a
    Space is lost on restart, so jobs must live there when it exists.
    """
    configured = os.environ.get("FUSION_DATA_DIR")
    if configured:
        return Path(configured)
    persistent = Path(os.environ.get(SPACES_PERSISTENT_ENV) or SPACES_PERSISTENT_DIR)
    if os.environ.get("SPACE_ID") and persistent.is_dir():
        return persistent / "fusion-studio"
    return Path("data")
