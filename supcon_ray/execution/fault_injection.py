"""A pause point for fault-injection tests, off unless :data:`PAUSE_ENV` names a folder.

A test that kills a node "mid-trial" must know that the trial on it has a checkpoint the driver has
registered, and must stop the trial from finishing or moving on before the kill lands; polling the
storage for checkpoint folders cannot tell either. With :data:`PAUSE_ENV` set in the environment of
the cluster's processes, a trial's first attempt, right after its first checkpoint is reported
(Tune's ``report`` returns only once the driver has processed and registered it), writes
``<folder>/<trial_id>@<node_id>.ready`` and waits until ``<folder>/release`` exists. A retried
attempt (one that restored a checkpoint) never waits. Nothing in a study run reads this variable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Environment variable naming the barrier folder.
PAUSE_ENV = "SUPCON_RAY_PAUSE_AFTER_FIRST_CHECKPOINT"
#: The longest a trial waits for the release (a test that never releases fails on its own asserts).
MAX_WAIT_S = 600.0
RELEASE = "release"


def ready_name(trial_id: str, node_id: str) -> str:
    """The file a paused trial writes: ``<trial_id>@<node_id>.ready``."""
    return f"{trial_id}@{node_id}.ready"


def pause_after_first_checkpoint(trial_id: str, node_id: str) -> None:
    """Signal and wait at the barrier when :data:`PAUSE_ENV` is set; return at once otherwise."""
    folder = os.environ.get(PAUSE_ENV)
    if not folder:
        return
    barrier = Path(folder)
    (barrier / ready_name(trial_id, node_id)).touch()
    deadline = time.monotonic() + MAX_WAIT_S
    while not (barrier / RELEASE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
