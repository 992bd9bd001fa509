"""The one error hierarchy of the project, and the errors the engine raises.

Every deliberate error, whichever layer raises it, is a ``FusionError``:
the engine's (``EngineError`` and below, here), the scheduler's
(``scheduler.errors.SchedulerError``) and the HTTP layer's own
(``studio.errors.ApiError``). Each concrete class declares, as class attributes:

- ``code``: a stable machine-readable string (a public contract: docs/contracts.md);
- ``permanent``: whether retrying the same work can never help (bad input never
  gets better by retrying; a crashed worker or an out-of-memory error may);
- ``http_status``: the status the API answers it with (``studio.errors`` reads it,
  there is no code → status table anywhere);
- ``retry_after``: seconds to send as ``Retry-After``, or ``None``.

and every instance carries a ``message`` a person understands. The table of
codes is in docs/architecture.md ("Errors").

This module sits at the bottom of the layers (``studio → scheduler → engine``),
so every layer can import the base from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class FusionError(Exception):
    """Base class of every error the project raises on purpose.

    A bare ``FusionError`` is an internal failure: the same code, status and
    permanence as an unexpected exception (``internal_error``, 500, may pass on
    retry). Subclasses declare their own attributes.
    """

    code: str = "internal_error"
    permanent: bool = False
    http_status: int = 500
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        if self.retry_after is not None:
            self.headers.setdefault("Retry-After", str(self.retry_after))

    def __reduce__(self):
        # Whatever a subclass's constructor takes, a copy (pickle: a worker process, a
        # Celery result) is rebuilt from the message and the instance's attributes.
        return (_rebuild, (type(self), self.message), self.__dict__)


def _rebuild(cls: type[FusionError], message: str) -> FusionError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class EngineError(FusionError):
    """Base class of every error the engine raises on purpose (bad work: 422, permanent)."""

    code = "engine_error"
    permanent = True
    http_status = 422


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
    """A model file is missing, corrupt, or could not be downloaded.

    Permanent and 422: the server's operator has to install the model (the message
    says how); retrying the same job on the same server cannot make it appear.
    """

    code = "model_unavailable"


class ContentPolicyViolation(EngineError):
    """An input was refused by the content gate."""

    code = "content_policy"


class Canceled(EngineError):
    """The work was canceled through its cancel token (409: it conflicts with that request)."""

    code = "canceled"
    http_status = 409


class TransientError(EngineError):
    """A failure that may pass on retry (resource exhaustion, device errors)."""

    code = "transient"
    permanent = False
    http_status = 503
    retry_after = 5


class OutOfMemory(TransientError):
    """The worker or its device ran out of memory; another attempt may fit."""

    code = "out_of_memory"
