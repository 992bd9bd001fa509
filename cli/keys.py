"""``python app.py keys create|list|revoke NAME``: API keys, stored hashed."""

from studio.cli import keys_main as main

__all__ = ["main"]
