"""Face swappers: ``classic`` (embedded, no model) and ``inswapper_128`` (ONNX model).

The concrete classes are imported from their modules (``engine.swappers.classic``,
``engine.swappers.inswapper``) so that using one does not load the other's
dependencies.
"""

from engine.swappers.base import SourceIdentity, Swapper

__all__ = ["SourceIdentity", "Swapper"]
