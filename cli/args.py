"""argparse that reports usage errors through the CLI's error policy (exit 2, one line)."""

from __future__ import annotations

import argparse

from engine.errors import InvalidOptions


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InvalidOptions(message)
