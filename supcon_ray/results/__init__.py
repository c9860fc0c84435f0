"""Results: the Parquet store of trials and epochs, the study's manifest (its one state), reading study
folders, exporting one for publishing, and reading a table of runs made elsewhere (:mod:`.table`).
"""

from supcon_ray.exports import exports

__all__ = [
    "Manifest",
    "ResultStore",
    "export",
    "fingerprint",
    "load",
    "open_manifest",
    "parse_columns",
    "prepare_table",
    "read_manifest",
    "read_results",
    "read_table",
    "stats_rows",
]
__getattr__, __dir__ = exports(__name__, {
    "ResultStore": "storage",
    "read_results": "storage",
    "Manifest": "manifest",
    "read_manifest": "manifest",
    "fingerprint": "manifest",
    "open_manifest": "manifest",
    "load": "folders",
    "stats_rows": "folders",
    "export": "export",
    "parse_columns": "table",
    "prepare_table": "table",
    "read_table": "table",
})
