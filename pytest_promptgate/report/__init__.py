"""Renderings of a session's eval results: terminal lines, JSON, Markdown, HTML and JUnit XML of the same objects.

Builds text and data; never writes to the terminal or to files itself. ``summary``
holds what every rendering says; each other module renders it one way.
"""

from __future__ import annotations

from .html import compare_html, html_report
from .json import JSON_REPORT_VERSION, compare_json, json_report
from .junit import TOLERATED_CHOICES, complete_junit, failing, tolerated_reason
from .markdown import markdown_report
from .terminal import compare_lines, promotion_lines, terminal_lines

__all__ = [
    "JSON_REPORT_VERSION", "TOLERATED_CHOICES", "compare_html", "compare_json", "compare_lines", "complete_junit",
    "failing", "html_report", "json_report", "markdown_report", "promotion_lines", "terminal_lines", "tolerated_reason",
]
