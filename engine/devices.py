"""Device strings (``cpu``, ``cpu:1``, ``cuda:0``) and the ONNX Runtime providers they map to."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidOptions

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed device. ``cpu:N`` names a CPU slot; all CPU slots share the cores."""

    kind: str  # "cpu" | "cuda"
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> Device:
        match = _DEVICE_RE.match(text.strip().lower())
        if not match:
            raise InvalidOptions(f"unknown device {text!r}: use cpu, cpu:N or cuda:N")
        return cls(kind=match.group(1), index=int(match.group(2) or 0))

    def __str__(self) -> str:
        return f"{self.kind}:{self.index}"

    def providers(self, available: list[str]) -> list:
        """ONNX Runtime providers for this device, always ending with the CPU fallback."""
        if self.kind == "cuda" and "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {"device_id": self.index}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]


def parse_devices(text: str) -> list[Device]:
    """Parse a comma-separated device list such as ``cuda:0,cuda:1``."""
    devices = [Device.parse(part) for part in text.split(",") if part.strip()]
    if not devices:
        raise InvalidOptions("no device given")
    return devices
