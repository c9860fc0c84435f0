"""Reporting: the writers of the report's numbers (a :class:`supcon_ray.analysis.ReportNumbers`): the JSON,
the HTML page, the Markdown tables, the figures and the console verdict. They format; they compute nothing.
"""

from supcon_ray.exports import exports

__all__ = [
    "build_report",
    "fig4a",
    "headline",
    "render",
    "results_markdown",
    "write_json",
]
__getattr__, __dir__ = exports(__name__, {
    "build_report": "files",
    "write_json": "numbers",
    "headline": "console",
    "render": "html",
    "results_markdown": "markdown",
    "fig4a": "plots",
})
