"""The report's outputs, frozen: ``report --json``, ``--markdown``, the console verdict and the HTML page of
each ``docs/results/*`` folder and of two multi-folder reports (the paper's Fig. 4a and Fig. 4d views over
datasets), and ``supcon_ray.analyze`` with its Markdown on a simulated three-method table, are byte-identical
to the files in ``tests/reporting/golden/`` (the page as the SHA-256 of its text without the plotly.js
bundle, which is the library's, not ours).

A change to the analysis or its writers that moves any published number, claim or sentence fails here;
a change meant to move them regenerates the files (``SUPCON_RAY_REGOLD=1 python -m pytest
tests/reporting/test_golden.py``) and the diff is reviewed with the change, number by number.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import supcon_ray
from supcon_ray.analysis import build_numbers
from supcon_ray.report import main
from supcon_ray.reporting.markdown import results_markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
FOLDERS = sorted(p.name for p in RESULTS.iterdir() if (p / "manifest.json").is_file())
#: Reports over several folders, each one Holm family over all their factors.
COMBINED = {"combined-fig4a": ["fig4a-digits", "fig4a-cifar10-subset", "fig4a-three-methods-digits"],
            "combined-fig4d": ["fig4d-temperature-digits", "fig4d-temperature-cifar10-subset"]}
SIMULATED = "simulated-three-methods"
GOLDEN = Path(__file__).resolve().parent / "golden"
PLOTLY_JS = re.compile(r"<script>/\*\*\n\* plotly\.js.*?</script>", flags=re.S)


def _check(name: str, outputs: dict[str, str]) -> None:
    want = GOLDEN / name
    if os.environ.get("SUPCON_RAY_REGOLD") == "1":
        want.mkdir(parents=True, exist_ok=True)
        for file, text in outputs.items():
            (want / file).write_text(text)
    for file, text in outputs.items():
        assert text == (want / file).read_text(), f"{name}/{file} changed: compare with tests/reporting/golden/{name}/{file}"


def test_every_published_folder_has_its_golden_outputs():
    assert len(FOLDERS) == 7
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted([*FOLDERS, *COMBINED, SIMULATED])


@pytest.mark.parametrize("name", [*FOLDERS, *COMBINED])
def test_published_outputs_are_unchanged(name, tmp_path, capsys):
    folders = [RESULTS / f for f in COMBINED.get(name, [name])]
    html, js, md = tmp_path / "report.html", tmp_path / "report.json", tmp_path / "report.md"
    assert main([*map(str, folders), "-o", str(html), "--json", str(js), "--markdown", str(md)]) == 0
    console = "".join(line for line in capsys.readouterr().out.splitlines(keepends=True)
                      if not line.startswith("report: "))  # the page's path: this run's temporary folder
    page = hashlib.sha256(PLOTLY_JS.sub("<plotlyjs/>", html.read_text()).encode()).hexdigest()
    _check(name, {"report.json": js.read_text(), "report.md": md.read_text(), "console.txt": console,
                  "page.sha256": page + "\n"})


def _three_methods() -> pd.DataFrame:
    """CE, SupCon and a plugin loss on three factors (relative, named, named), 3 seeds, a few diverged runs."""
    rng = np.random.default_rng(7)
    rows = []
    factors = {"lr": ["x0.1", "x0.3", "x1", "x3", "x10"], "optimizer": ["sgd", "rmsprop", "lars"],
               "augment": ["a", "b", "c", "d"]}
    for factor, settings in factors.items():
        for loss, scale in {"ce": 0.04, "supcon": 0.02, "poly": 0.03}.items():
            for s in settings:
                mu = 0.8 + scale * rng.standard_normal()
                for seed in range(3):
                    status = "diverged" if rng.random() < 0.04 else "completed"
                    rows.append({"method": loss, "factor": factor, "value": f"{factor}={s}", "seed": seed,
                                 "acc": mu + 0.01 * rng.standard_normal(), "status": status})
    return pd.DataFrame(rows)


def test_a_simulated_three_method_table_gives_the_same_numbers_and_tables():
    table = _three_methods()
    numbers = supcon_ray.analyze(table, metric="acc", columns={"loss": "method", "setting": "value"})
    typed = build_numbers(table.rename(columns={"method": "loss", "value": "setting"})
                          .assign(study="study", design="one_factor"), "acc", with_importance=False)
    assert typed.to_json() == numbers
    _check(SIMULATED, {"analyze.json": json.dumps(numbers, indent=2), "report.md": results_markdown(typed)})
