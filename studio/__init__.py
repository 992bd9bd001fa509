"""Fusion Studio's presentation layer: Gradio UI, REST API, webhooks, metrics, logs.

``studio.server.build_app(StudioConfig)`` builds the single ASGI app;
``studio.cli`` holds the ``serve`` and ``keys`` commands that ``app.py`` calls.
"""
