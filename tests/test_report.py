"""Statistics against hand-computed values, and the report rendered in a real headless Chromium."""

import itertools
import json
import math
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from supcon_ray import stats
from supcon_ray.config import TrainConfig
from supcon_ray.report import build_report, main
from supcon_ray.storage import ResultStore


# -- statistics -------------------------------------------------------------------------------
def test_spread_by_hand():
    s = stats.spread([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5 and s["range"] == 3.0
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, ddof=1
    assert s["iqr"] == pytest.approx(3.25 - 1.75)
    assert math.isnan(stats.spread([0.7])["std"])


def test_ratio_and_bootstrap_interval():
    x = np.random.default_rng(0).normal(0.8, 0.05, 12)
    ce, supcon = 2 * x, x
    ratio, low, high = stats.spread_ratio_ci(ce, supcon, seed=1)
    assert ratio == pytest.approx(2.0)  # every CE deviation is twice SupCon's
    assert (low, high) == stats.spread_ratio_ci(ce, supcon, seed=1)[1:]  # same seed, same interval
    other = stats.spread_ratio_ci(ce, supcon, seed=2)[1:]
    assert other != (low, high)  # a different seed resamples differently...
    assert abs(other[0] - low) < 0.3 and abs(other[1] - high) < 0.6  # ...but the interval is stable
    assert low < 2.0 < high


def test_brown_forsythe_matches_anova_on_median_deviations():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 9), rng.normal(0, 3, 7)
    stat, p = stats.brown_forsythe(a, b)
    by_hand = sps.f_oneway(np.abs(a - np.median(a)), np.abs(b - np.median(b)))
    assert stat == pytest.approx(by_hand.statistic) and p == pytest.approx(by_hand.pvalue)


@pytest.mark.parametrize("values", [[0.3], [0.5, 0.1], [0.2, 0.9, 0.4], [0.1, 0.1, 0.6, 0.3, 0.8], [0.5, 0.2, 0.7, 0.7, 0.1, 0.9]])
def test_expected_max_matches_enumeration(values):
    n = len(values)
    for k in range(1, 5):
        draws = list(itertools.product(values, repeat=k))  # all n^k equally likely ordered draws
        brute = sum(max(d) for d in draws) / n**k
        assert stats.expected_max(values, k) == pytest.approx(brute, abs=1e-12)


def test_noise_floor_by_hand():
    df = pd.DataFrame({
        "factor": ["lr"] * 4, "loss": ["ce"] * 4, "setting": ["a", "a", "b", "b"],
        "status": ["completed"] * 4, "test_top1": [0.5, 0.7, 0.8, 0.8],
    })
    row = stats.noise_floor(df, "test_top1")[0]
    assert row["seed_std"] == pytest.approx(math.sqrt((0.02 + 0.0) / 2))  # variances 0.02 and 0
    assert row["setting_std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))


def test_diverged_count_at_chance_failed_are_counted_not_scored():
    df = pd.DataFrame({"status": ["completed", "diverged", "failed"], "test_top1": [0.9, 0.1, np.nan]})
    assert list(stats.scored(df, "test_top1")["test_top1"]) == [0.9, 0.1]
    assert stats.status_counts(df) == {"completed": 1, "diverged": 1, "failed": 1}


def test_verdicts():
    assert "not enough trials to tell" in stats.verdict("lr", 3, 2, 2, 2.0, math.nan, math.nan, math.nan)
    assert "only one setting" in stats.verdict("lr", 1, 9, 9, 2.0, 1.5, 3.0, 0.01)
    assert "SupCon's accuracy varies less" in stats.verdict("lr", 3, 9, 9, 2.0, 1.5, 3.0, 0.01)
    assert "do not show a difference" in stats.verdict("lr", 3, 9, 9, 1.1, 0.6, 2.0, 0.5)


# -- a synthetic study on disk ------------------------------------------------------------------
def _write_study(root: Path, losses=("supcon", "ce"), settings=("sgd", "lars", "rmsprop"), seeds=(0, 1, 2)) -> Path:
    store = ResultStore(str(root), "synthetic")
    rng = np.random.default_rng(0)
    now = datetime.now(timezone.utc)
    base = {"supcon": 0.9, "ce": 0.85}
    for loss in losses:
        for i, setting in enumerate(settings):
            for seed in seeds:
                diverged = loss == "ce" and setting == "lars" and seed == 0
                acc = 0.1 if diverged else base[loss] - (0.02 if loss == "supcon" else 0.1) * i + rng.normal(0, 0.01)
                train = TrainConfig(loss=loss, optimizer=setting, seed=seed, lr=0.1 * (i + 1)).model_dump()
                tid = f"{loss}-{setting}-s{seed}"
                row = {**train, "study": "synthetic", "trial_id": tid, "factor": "optimizer", "setting": f"optimizer={setting}",
                       "design": "one_factor", "status": "diverged" if diverged else "completed", "test_top1": acc,
                       "val_top1": acc + 0.01, "chance_top1": 0.1, "started_at": now, "finished_at": now}
                epochs = [{"stage": "pretrain" if loss == "supcon" else "ce", "epoch": e, "train_loss": 3.0 / e,
                           "lr": 0.1, "images_per_second": 100.0, "val_top1": None, "epoch_seconds": 1.0} for e in (1, 2, 3)]
                store.write_trial(row, epochs)
    store.write_text("study.yaml", "study: synthetic\ndescription: A synthetic study for tests.\n")
    return root / "synthetic"


def test_report_numbers_and_json(tmp_path):
    folder = _write_study(tmp_path)
    out = build_report(str(folder), json_path=str(tmp_path / "summary.json"))
    assert out.is_file() and out.stat().st_size > 1_000_000  # plotly.js embedded: works offline
    summary = json.loads((tmp_path / "summary.json").read_text())
    head = summary["headline"][0]
    assert head["losses"]["ce"]["diverged"] == 1 and head["losses"]["ce"]["n"] == 9  # the diverged trial is scored
    assert head["ratio_ce_over_supcon"] > 1 and head["ratio_ci95"][0] is not None
    assert len(summary["expected_max"]["curves"]["supcon"]) == 9
    assert {r["loss"] for r in summary["noise_floor"]} == {"supcon", "ce"}


def test_report_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no trials found" in capsys.readouterr().err
    folder = _write_study(tmp_path)
    assert main([str(folder), "--metric", "speed"]) == 2
    assert "valid: " in capsys.readouterr().err


def test_report_with_one_loss_and_one_setting_still_renders(tmp_path):
    folder = _write_study(tmp_path, losses=("supcon",), settings=("sgd",))
    html = build_report(str(folder)).read_text()
    assert "needs both losses" in html and "single setting" in html


# -- the page in a real browser -----------------------------------------------------------------
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium_cmd(binary: str, profile: str) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--window-size=1200,4000"]


def test_report_renders_in_headless_chromium(tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium not found (apt-get install chromium): the browser test of the report is skipped")
    folder = _write_study(tmp_path)
    page = build_report(str(folder))
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(_chromium_cmd(binary, profile) + ["--enable-logging=stderr", "--v=0", "--dump-dom", url],
                             capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"Uncaught|Error|error", line)]
    assert not errors, errors
    html = dom.stdout
    expected = ["fig-settings-optimizer", "fig-noise-floor", "fig-expected-max", "fig-importance", "fig-learning-curves"]
    for div_id in expected:
        start = html.find(f'id="{div_id}"')
        assert start >= 0, f"plot container {div_id} missing"
        nxt = min([html.find(f'id="{d}"', start + 1) for d in expected if html.find(f'id="{d}"', start + 1) > 0] or [len(html)])
        chunk = html[start:nxt]
        assert 'class="main-svg"' in chunk and ("<path" in chunk or "<rect" in chunk), f"{div_id} drew no SVG"
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(_chromium_cmd(binary, profile) + [f"--screenshot={shot}", url], capture_output=True, timeout=180)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 5, "the screenshot is blank"
