"""Errors the engine raises, each with a stable code and a message a person understands.

``permanent`` tells the scheduler whether retrying could help: bad input never
gets better by retrying, a crashed worker or an out-of-memory error may.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    code = "engine_error"
    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(EngineError):
    """An input file is unreadable, of the wrong kind, truncated or too large."""

    code = "invalid_input"


class InvalidOptions(EngineError):
    """An option is unknown or out of range; raised before any work starts."""

    code = "invalid_options"


class NoFaceFound(EngineError):
    """No face where one is required (for example in a source image)."""

    code = "no_face"


class ModelUnavailable(EngineError):
    """A model file is missing, corrupt, or could not be downloaded."""

    code = "model_unavailable"


class ContentPolicyViolation(EngineError):
    """An input was refused by the content gate."""

    code = "content_policy"


class Canceled(EngineError):
    """The work was canceled through its cancel token."""

    code = "canceled"


class TransientError(EngineError):
    """A failure that may pass on retry (resource exhaustion, device errors)."""

    code = "transient"
    permanent = False
