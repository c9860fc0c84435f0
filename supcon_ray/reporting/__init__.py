"""Reporting: the report's numbers (the ``--json`` contract), its HTML page, Markdown tables and figures.
It formats what :mod:`supcon_ray.stats` computes.
"""

from supcon_ray.exports import exports

__all__ = [
    "compute",
    "fig4a",
    "headline",
    "render",
    "results_markdown",
]
__getattr__, __dir__ = exports(__name__, {
    "compute": "numbers",
    "headline": "numbers",
    "render": "html",
    "results_markdown": "markdown",
    "fig4a": "plots",
})
