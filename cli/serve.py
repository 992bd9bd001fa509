"""``python app.py [serve]``: the studio server (UI, REST API, metrics)."""

from studio.cli import serve_main as main

__all__ = ["main"]
