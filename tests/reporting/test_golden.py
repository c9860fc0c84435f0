"""The published folders' outputs, frozen: ``report --json``, ``--markdown`` and the console verdict of each
``docs/results/*`` folder are byte-identical to the files in ``tests/reporting/golden/``.

A change to the analysis or its writers that moves any published number, claim or sentence fails here;
a change meant to move them regenerates the files (``SUPCON_RAY_REGOLD=1 python -m pytest
tests/reporting/test_golden.py``) and the diff is reviewed with the change, number by number.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supcon_ray.report import main

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(p.name for p in (ROOT / "docs" / "results").iterdir() if (p / "manifest.json").is_file())
GOLDEN = Path(__file__).resolve().parent / "golden"


def test_every_published_folder_has_its_golden_outputs():
    assert len(FOLDERS) == 7 and sorted(p.name for p in GOLDEN.iterdir()) == FOLDERS


@pytest.mark.parametrize("folder", FOLDERS)
def test_published_outputs_are_unchanged(folder, tmp_path, capsys):
    html, js, md = tmp_path / "report.html", tmp_path / "report.json", tmp_path / "report.md"
    assert main([str(ROOT / "docs" / "results" / folder), "-o", str(html), "--json", str(js), "--markdown", str(md)]) == 0
    console = "".join(line for line in capsys.readouterr().out.splitlines(keepends=True)
                      if not line.startswith("report: "))  # the page's path: this run's temporary folder
    outputs = {"report.json": js.read_text(), "report.md": md.read_text(), "console.txt": console}
    want = GOLDEN / folder
    if os.environ.get("SUPCON_RAY_REGOLD") == "1":
        want.mkdir(parents=True, exist_ok=True)
        for name, text in outputs.items():
            (want / name).write_text(text)
    for name, text in outputs.items():
        assert text == (want / name).read_text(), f"{folder}/{name} changed: compare with tests/reporting/golden/{folder}/{name}"
