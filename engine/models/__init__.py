"""Model registry, downloader and the models directory manager."""

from engine.models.manager import ModelManager, ModelStatus, default_models_dir
from engine.models.registry import REGISTRY, ModelSpec, mtcnn_files

__all__ = [
    "REGISTRY",
    "ModelManager",
    "ModelSpec",
    "ModelStatus",
    "default_models_dir",
    "mtcnn_files",
]
