"""Results: the Parquet store of trials and epochs, the study's manifest (its one state), reading study
folders, and exporting one for publishing.
"""

from supcon_ray.exports import exports

__all__ = [
    "Manifest",
    "ResultStore",
    "export",
    "fingerprint",
    "load",
    "open_manifest",
    "read_manifest",
    "read_results",
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
})
