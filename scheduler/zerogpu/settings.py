"""How the ZeroGPU backend makes its calls, read from a Space's variables.

Kept apart so that the environment is parsed and checked in one place
(``FUSION_ZEROGPU_*``; see docs/spaces.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidOptions

ENV_DURATION = "FUSION_ZEROGPU_DURATION"
ENV_UNATTENDED = "FUSION_ZEROGPU_UNATTENDED"
ENV_DEVICE = "FUSION_ZEROGPU_DEVICE"
ENV_SEGMENTS_PER_CALL = "FUSION_ZEROGPU_SEGMENTS_PER_CALL"
ENV_DECORATOR = "FUSION_ZEROGPU_DECORATOR"
DEFAULT_DECORATOR = "spaces:GPU"
UNATTENDED_CHOICES = ("cpu", "gpu")


@dataclass(frozen=True)
class ZeroGPUSettings:
    """How calls are made; ``from_env`` reads the ``FUSION_ZEROGPU_*`` variables."""

    duration: float = 60.0  # seconds one call may take (the spaces default)
    unattended: str = "cpu"  # where work without a visitor runs: "cpu" or "gpu"
    device: str = "cuda:0"  # the device the work uses inside a call
    segments_per_call: int | None = None  # a cap on a video's segments per call
    decorator: str = DEFAULT_DECORATOR
    margin: float = 5.0  # seconds kept free at the end of a call
    cpu_slots: int = 1  # local CPU worker processes for unattended work

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise InvalidOptions(f"{ENV_DURATION} must be above 0 seconds")
        if self.unattended not in UNATTENDED_CHOICES:
            raise InvalidOptions(f"{ENV_UNATTENDED} must be cpu or gpu; got {self.unattended!r}")
        if self.segments_per_call is not None and self.segments_per_call < 1:
            raise InvalidOptions(f"{ENV_SEGMENTS_PER_CALL} must be at least 1")
        if ":" not in self.decorator:
            raise InvalidOptions(f"{ENV_DECORATOR} must be module:attribute")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ZeroGPUSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        try:
            if env.get(ENV_DURATION):
                values["duration"] = float(env[ENV_DURATION])
            if env.get(ENV_SEGMENTS_PER_CALL):
                values["segments_per_call"] = int(env[ENV_SEGMENTS_PER_CALL])
        except ValueError:
            raise InvalidOptions(
                f"{ENV_DURATION} and {ENV_SEGMENTS_PER_CALL} must be numbers"
            ) from None
        if env.get(ENV_UNATTENDED):
            values["unattended"] = env[ENV_UNATTENDED].strip().lower()
        if env.get(ENV_DEVICE):
            values["device"] = env[ENV_DEVICE].strip()
        if env.get(ENV_DECORATOR):
            values["decorator"] = env[ENV_DECORATOR].strip()
        values.update(overrides)
        return cls(**values)
