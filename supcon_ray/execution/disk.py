"""Disk kept to what resume needs: a finished trial's checkpoints go once its Parquet row is written.

A trial checkpoints every epoch so that a crash or Ctrl-C resumes it where it stopped; Tune keeps only
the latest (``CheckpointConfig(num_to_keep=1)``, :func:`supcon_ray.execution.executor.Executor`), and
once the trial's row is in Parquet (its final report says so) nothing reads its checkpoints again: a
retried or resumed trial finds its row and returns it without training
(:func:`supcon_ray.execution.runner.run_trial`). So they are removed then, through the storage's own
filesystem (a local folder or a cloud URI alike). What a study folder holds afterwards is its Parquet,
its manifest and Tune's small experiment state.
"""

from __future__ import annotations

import os

#: The folders Ray writes a checkpoint into, under a trial's folder.
CHECKPOINT_PREFIX = "checkpoint_"


def remove_checkpoints(filesystem, trial_path: str) -> int:
    """Remove every checkpoint folder directly under ``trial_path`` on ``filesystem`` (a
    ``pyarrow.fs.FileSystem``); return how many. A folder that is already gone is not an error."""
    from pyarrow import fs as pafs

    try:
        entries = filesystem.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if entry.type == pafs.FileType.Directory and entry.base_name.startswith(CHECKPOINT_PREFIX):
            try:
                filesystem.delete_dir(entry.path)
                removed += 1
            except OSError:  # removed meanwhile
                pass
    return removed


def remove_run(storage_uri: str, name: str) -> bool:
    """Remove the Ray Train run folder ``<storage_uri>/<name>`` (a finished trial's checkpoints and
    controller state); return whether it existed."""
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(storage_uri if "://" in storage_uri else os.path.abspath(storage_uri))
    path = f"{root.rstrip('/')}/{name}"
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return False
    try:
        filesystem.delete_dir(path)
    except OSError:
        return False
    return True
