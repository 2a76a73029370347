"""Renderings of a session's eval results: terminal lines, JSON, Markdown and HTML of the same objects.

Builds text and data; never writes to the terminal or to files itself. ``summary``
holds what every rendering says; each other module renders it one way.
"""

from __future__ import annotations

from .html import html_report
from .json import JSON_REPORT_VERSION, json_report
from .markdown import markdown_report
from .terminal import promotion_lines, terminal_lines

__all__ = ["JSON_REPORT_VERSION", "html_report", "json_report", "markdown_report", "promotion_lines", "terminal_lines"]
