"""Fusion Studio face engine: faces, models, swapping and video I/O.

The engine knows nothing about jobs, HTTP or Gradio. It takes arrays or paths
and options, returns results, and reports progress through a callback and a
cancel token, so that it can be used as a plain library.
"""
