"""Publishing a study folder: what ``docs/results/<study>/`` holds, with no machine paths."""

from __future__ import annotations

from pathlib import Path

from supcon_ray.config import ConfigError
from supcon_ray.results.manifest import MANIFEST_FILE, read_manifest
from supcon_ray.results.storage import read_results, read_text


def export(results_dir: str, output: str) -> list[Path]:
    """Write what publishing a study needs, exactly what ``docs/results/<study>/`` holds: the trials and
    epochs compacted into one Parquet file each, the manifest and the study file. Trial rows hold the
    dataset as written in the study file, so nothing names the machine that ran it."""
    import pyarrow.parquet as pq

    trials, epochs = read_results(results_dir)
    if trials.num_rows == 0:
        raise ConfigError(f"{results_dir}: no trials found in {results_dir}/trials (run a study first)")
    out = Path(output)
    written = []
    for folder, table in (("trials", trials), ("epochs", epochs)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        table = table.sort_by([("trial_id", "ascending")] + ([("epoch", "ascending")] if "epoch" in table.column_names else []))
        pq.write_table(table, out / folder / f"{folder}.parquet")
        written.append(out / folder / f"{folder}.parquet")
    manifest = read_manifest(results_dir)
    if manifest is not None and manifest.analysed is not None:  # folders from before manifests have none
        (out / MANIFEST_FILE).write_text(manifest.to_json())
        written.append(out / MANIFEST_FILE)
    for name in ("study.yaml",):
        text = read_text(results_dir, name)
        if text is not None:
            (out / name).write_text(text)
            written.append(out / name)
    return written
