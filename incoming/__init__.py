"""Incoming!!: a large-file upload server for web applications."""

__version__ = "0.2.0.dev0"
