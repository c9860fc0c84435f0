"""Statistics against hand-computed values, and the report rendered in a real headless Chromium."""

import itertools
import json
import sys
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from supcon_ray import stats
from supcon_ray.reporting import plots
from supcon_ray.config import TrainConfig
from supcon_ray.report import build_report, main
from supcon_ray.reporting.console import headline
from supcon_ray.results.storage import ResultStore


# -- statistics that the report formats (the rest: tests/stats/test_stats.py) ------------------------------
@pytest.mark.parametrize("values", [[0.3], [0.5, 0.1], [0.2, 0.9, 0.4], [0.1, 0.1, 0.6, 0.3, 0.8], [0.5, 0.2, 0.7, 0.7, 0.1, 0.9]])
def test_expected_max_matches_enumeration(values):
    n = len(values)
    for k in range(1, 5):
        draws = list(itertools.product(values, repeat=k))  # all n^k equally likely ordered draws
        brute = sum(max(d) for d in draws) / n**k
        assert stats.expected_max(values, k) == pytest.approx(brute, abs=1e-12)


def test_diverged_count_at_chance_failed_are_counted_not_scored():
    df = pd.DataFrame({"status": ["completed", "diverged", "failed"], "test_top1": [0.9, 0.1, np.nan]})
    assert list(stats.scored(df, "test_top1")["test_top1"]) == [0.9, 0.1]
    assert list(stats.completed(df, "test_top1")["test_top1"]) == [0.9]
    assert stats.status_counts(df) == {"completed": 1, "diverged": 1, "failed": 1}


def test_numeric_factors_sit_on_a_numeric_axis():
    df = pd.DataFrame({"setting": ["batch_size=1024", "batch_size=256", "batch_size=2048", "batch_size=512"],
                       "batch_size": [1024, 256, 2048, 512]})
    positions, log = plots.setting_axis(df, "batch_size")
    assert positions == {"batch_size=1024": 1024.0, "batch_size=256": 256.0, "batch_size=2048": 2048.0, "batch_size=512": 512.0}
    assert log
    assert plots.setting_axis(pd.DataFrame({"setting": ["optimizer=sgd"], "optimizer": ["sgd"]}), "optimizer") == (None, False)


def test_relative_settings_share_one_axis_across_losses_with_different_bases():
    # CE's base lr 0.1 and SupCon's 1.5: the absolute values differ per loss, the multiples do not
    df = pd.DataFrame({"setting": ["lr=x0.03333", "lr=x1", "lr=x30"] * 2, "loss": ["ce"] * 3 + ["supcon"] * 3,
                       "lr": [0.1 / 30, 0.1, 3.0, 1.5 / 30, 1.5, 45.0]})
    positions, log = plots.setting_axis(df, "lr")
    assert positions == {"lr=x0.03333": 0.03333, "lr=x1": 1.0, "lr=x30": 30.0} and log
    assert plots.short_label("augment=stacked_randaugment") == "Stacked RA"
    assert plots.short_label("optimizer=lars") == "LARS" and plots.short_label("batch_size=256") == "256"


# -- a synthetic study on disk ------------------------------------------------------------------
FACTORS = {"optimizer": [{"optimizer": o} for o in ("sgd", "lars", "rmsprop", "adamw")],
           "lr": [{"lr": v} for v in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)]}


def _write_study(root: Path, name="synthetic", losses=("supcon", "ce"), factors=None, seeds=(0, 1, 2), ce_slope=0.08) -> Path:
    store = ResultStore(str(root), name)
    rng = np.random.default_rng(0)
    now = datetime.now(timezone.utc)
    base = {"supcon": 0.9, "ce": 0.85}
    for factor, settings in (factors or FACTORS).items():
        for loss in losses:
            for i, values in enumerate(settings):
                for seed in seeds:
                    diverged = loss == "ce" and i == 1 and seed == 0
                    slope = ce_slope if loss == "ce" else 0.01
                    acc = 0.1 if diverged else base[loss] - slope * abs(i - 1.5) + rng.normal(0, 0.005)
                    train = TrainConfig(loss=loss, seed=seed, **values).model_dump()
                    label = ",".join(f"{k}={v}" for k, v in values.items())
                    row = {**train, "study": name, "trial_id": f"{loss}-{factor}-{label}-s{seed}", "factor": factor,
                           "setting": label, "design": "one_factor", "status": "diverged" if diverged else "completed",
                           "test_top1": acc, "val_top1": acc + 0.01, "chance_top1": 0.1, "started_at": now, "finished_at": now}
                    epochs = [{"stage": "pretrain" if loss == "supcon" else "ce", "epoch": e, "train_loss": 3.0 / e,
                               "lr": 0.1, "images_per_second": 100.0, "val_top1": None, "epoch_seconds": 1.0} for e in (1, 2, 3)]
                    store.write_trial(row, epochs)
    store.write_text("study.yaml", f"study: {name}\ndescription: A synthetic study for tests.\n")
    return root / name


def test_report_numbers_and_json(tmp_path):
    folder = _write_study(tmp_path)
    out, _ = build_report(str(folder), json_path=str(tmp_path / "summary.json"))
    page = out.read_text()
    # plotly.js is embedded, so the page works offline: its source is inline and no script is fetched
    assert re.search(r"plotly\.js v\d+\.\d+\.\d+", page) and not re.search(r"<script[^>]*\bsrc=", page)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metric"] == "test_top1" and summary["studies"] == ["synthetic"]
    by_factor = {f["factor"]: f for f in summary["factors"]}
    lr, opt = by_factor["lr"], by_factor["optimizer"]
    assert lr["n_settings"] == 6 and lr["paired_settings"] == 6
    ce = lr["losses"]["ce"]
    assert (ce["completed"], ce["diverged"], ce["failed"]) == (17, 1, 0) and ce["divergence_rate"] == pytest.approx(1 / 18)
    assert ce["settings"]["lr=0.01"]["n"] == 3 and ce["settings"]["lr=0.03"]["n"] == 2  # spread on completed runs
    assert min(s["drop_from_best"] for s in ce["settings"].values()) == 0
    assert lr["ratio"] > 1 and lr["claim"] == "supcon_less_sensitive", lr["sentence"]
    # Holm over the testable factor and the pooled test (the optimizer's 4 settings cannot be tested)
    assert [lr["p_adjusted"], summary["overall"]["p_adjusted"]] == pytest.approx(
        _holm([lr["p_value"], summary["overall"]["p_value"]]))
    assert opt["claim"] == "insufficient" and "cannot tell" in opt["sentence"]  # 4 settings cannot reach 0.05
    # pooled over lr and the optimizer (10 paired settings, SupCon's spread far smaller in both): the sign-flip
    # test over the blocks' within-block contrasts (5 + 3 of them) gives its smallest p, 2 / 2^8 (the observed
    # pattern and its mirror); Holm over the family of the lr factor and the pooled test (the optimizer's 4
    # settings cannot reach alpha alone) doubles it
    overall = summary["overall"]
    assert overall["p_value"] == pytest.approx(2 / 2**8) and overall["p_adjusted"] == pytest.approx(4 / 2**8)
    assert overall["ratio"] > 1 and overall["claim"] == "supcon_less_sensitive", overall["sentence"]
    assert summary["divergence"]["per_loss"]["ce"]["diverged"] == 2
    assert summary["expected_max"]["available"] is False and "random" in summary["expected_max"]["reason"]
    # one-at-a-time settings are not a sampled search: importance is not fitted to them
    assert summary["importance"] == {}
    these = lr["these_settings"]
    assert these["claim"] == "supcon_less_sensitive" and these["ratio"] > 1 and these["ci95"][0] > 1, these["sentence"]
    pooled_these = summary["overall"]["these_settings"]
    assert pooled_these["claim"] == "supcon_less_sensitive" and pooled_these["p_adjusted"] < 0.05, pooled_these["sentence"]
    assert pooled_these["ci95"][0] > 1 and pooled_these["ratio"] > 1
    assert {"ratio", "claim", "changes_conclusion"} <= set(lr["logit"]) and "conservative" in lr


def _holm(ps):
    """Holm's step-down adjustment, by hand: the k-th smallest p times (m - k), made monotone, capped at 1."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - k) * ps[i]))
        out[i] = running
    return out


def test_combined_report_is_one_family(tmp_path, capsys):
    a = _write_study(tmp_path, "optimizers", factors={"optimizer": FACTORS["optimizer"]})
    b = _write_study(tmp_path, "learning_rates", factors={"lr": FACTORS["lr"]}, ce_slope=0.002)
    out = tmp_path / "fig4a.html"
    assert main([str(a), str(b), "-o", str(out), "--json", str(tmp_path / "fig4a.json")]) == 0
    summary = json.loads((tmp_path / "fig4a.json").read_text())
    assert summary["studies"] == ["learning_rates", "optimizers"]
    assert [(f["study"], f["factor"]) for f in summary["factors"]] == [("learning_rates", "lr"), ("optimizers", "optimizer")]
    assert summary["overall"]["factors"] == ["learning_rates/lr", "optimizers/optimizer"] and summary["overall"]["n_settings"] == 10
    lr = summary["factors"][0]
    # Holm over the testable factor (lr) and the pooled test: a family of 2, across both study folders
    assert [lr["p_adjusted"], summary["overall"]["p_adjusted"]] == pytest.approx(
        _holm([lr["p_value"], summary["overall"]["p_value"]]))
    assert out.is_file() and "optimizers" in out.read_text()


def test_report_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no trials found" in capsys.readouterr().err
    folder = _write_study(tmp_path)
    assert main([str(folder), "--metric", "speed"]) == 2
    assert "valid: " in capsys.readouterr().err


def test_report_with_one_loss_and_one_setting_still_renders(tmp_path):
    folder = _write_study(tmp_path, losses=("supcon",), factors={"optimizer": FACTORS["optimizer"][:1]})
    html = build_report(str(folder))[0].read_text()
    assert "a comparison of methods needs two" in html and "single setting" in html and "cannot tell" in html


def test_markdown_tables_repeat_the_json_numbers(tmp_path, capsys):
    folder = _write_study(tmp_path)
    # a study file that names the base (lr 0.1, sgd), so the drop from the base can be computed
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "study": "synthetic", "description": "A synthetic study for tests.", "losses": ["supcon", "ce"],
        "seeds": [0, 1, 2], "base": {"common": {"lr": 0.1, "optimizer": "sgd"}},
        "vary": {k: [v[k] for v in values] for k, values in FACTORS.items()}}))
    assert main([str(folder), "--json", str(tmp_path / "s.json"), "--markdown", "-"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((tmp_path / "s.json").read_text())
    main_table, side = text.split("Side by side with the paper")
    main_table, drop_table = main_table.split("**Drop from the base**")
    drop_table, curves = drop_table.split("**Per setting**")
    lr_curve = curves[curves.index("| lr | CE | SupCon |"):]  # each factor's curve, after the answers, in order,
    assert lr_curve.index("| 0.01 |") < lr_curve.index("| 0.1 | **") < lr_curve.index("| 3.0 |")  # the base in bold
    drop_rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
                 for line in drop_table.splitlines() if line.startswith("| ") and not line.startswith("| factor")}
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in main_table.splitlines() if line.startswith("| ") and not line.startswith("| factor")}
    lr = next(f for f in summary["factors"] if f["factor"] == "lr")
    # one study: the side-by-side table has the paper's direction and this study's two answers, no pooled columns
    side_lr = next(line for line in side.splitlines() if line.startswith("| lr |"))
    assert [c.strip() for c in side_lr.split("|")[1:-1]][1:2] == ["SupCon less sensitive"]
    assert len(side_lr.split("|")[1:-1]) == 4 and "pooled over studies" not in side
    drop = lr["drop"]["losses"]["ce"]
    assert drop_rows["lr"][3] == f"{drop['drop']:.3f} [{drop['ci95'][0]:.3f}, {drop['ci95'][1]:.3f}]"
    assert drop_rows["lr"][9] == lr["drop"]["agreement"]["outcome"]
    ce = lr["these_settings"]["losses"]["ce"]
    assert rows["lr"][3] == f"{ce['spread']:.3f} [{ce['spread_ci95'][0]:.3f}, {ce['spread_ci95'][1]:.3f}]"
    assert rows["lr"][4].startswith(f"{lr['these_settings']['ratio']:.2f} [")
    assert rows["lr"][6:8] == ["SupCon less sensitive", "agree"]
    assert rows["lr"][8].startswith(f"{lr['ratio']:.2f} [") and rows["lr"][10:12] == ["SupCon less sensitive", "agree"]
    assert rows["lr"][12] == "0/18 / 1/18"
    assert rows["optimizer"][10] == "cannot tell" and rows["optimizer"][11] == "cannot tell"
    assert rows["**all pooled**"][1] == str(summary["overall"]["n_settings"])
    assert f"Conclusion: {summary['overall']['sentence']}" in text
    assert f"Conclusion: {summary['overall']['these_settings']['sentence']}" in text
    assert "Diverged runs over every trial of the study" in text and "CE 2 of 30, SupCon 0 of 30" in text


def test_divergence_over_every_trial_counts_a_shared_base_run_once(tmp_path):
    from supcon_ray.results.folders import load
    from views import compute

    trials, _, _ = load([str(_write_study(tmp_path))])
    diverged = trials[trials["status"] == "diverged"].iloc[[0]].assign(factor="augment", setting="augment=base")
    shared = pd.concat([trials, diverged], ignore_index=True)  # the same run analysed in a second factor
    numbers = compute(shared, "test_top1", with_importance=False)
    assert numbers["divergence_all_trials"]["per_loss"]["ce"]["diverged"] == 2  # not 3: one run, two factors
    assert numbers["divergence"]["per_loss"]["ce"]["diverged"] == 2
    per_factor = {f["factor"]: f["losses"]["ce"]["diverged"] for f in numbers["factors"]}
    assert per_factor["augment"] == 1 and sum(per_factor.values()) == 3  # each factor counts its own runs


def test_markdown_of_two_studies_pools_each_factor_and_sets_every_answer_beside_the_paper(tmp_path, capsys):
    a, b = _write_study(tmp_path / "a", name="a"), _write_study(tmp_path / "b", name="b", ce_slope=0.0)
    assert main([str(a), str(b), "-o", str(tmp_path / "r.html"), "--json", str(tmp_path / "s.json"), "--markdown", "-"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((tmp_path / "s.json").read_text())
    pooled = {x["factor"]: x for x in summary["overall"]["by_factor"]}
    assert set(pooled) == {"lr", "optimizer"} and pooled["lr"]["studies"] == ["a", "b"]
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Each factor pooled over the studies"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Side by side with the paper"))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in lines[start:end] if line.startswith("| ") and not line.startswith("| factor")}
    lr = pooled["lr"]
    assert rows["lr"][1:3] == ["a, b", str(lr["n_settings"])]
    assert rows["lr"][5].startswith(f"{lr['these_settings']['ratio']:.2f} [")
    assert rows["lr"][9].startswith(f"{lr['ratio']:.2f} [")
    side = next(line for line in lines if line.startswith("| lr | SupCon less sensitive |"))
    cells = [c.strip() for c in side.split("|")[1:-1]]
    per = {(f["study"], f["factor"]): f for f in summary["factors"]}
    assert len(cells) == 2 + 2 * 2 + 2
    assert cells[2].endswith(f"{per[('a', 'lr')]['these_settings']['ratio']:.2f} "
                             f"[{per[('a', 'lr')]['these_settings']['ci95'][0]:.2f}, {per[('a', 'lr')]['these_settings']['ci95'][1]:.2f}] (agree)")
    assert cells[6].startswith(("**SupCon less sensitive**", "no detectable difference", "**CE less sensitive**"))


@pytest.mark.parametrize("claim, paper, word", [
    ("supcon_less_sensitive", "supcon_less_sensitive", "agree"),
    ("ce_less_sensitive", "supcon_less_sensitive", "disagree"),
    ("no_difference", "supcon_less_sensitive", "cannot tell"),
    ("insufficient", "supcon_less_sensitive", "cannot tell"),
    ("supcon_less_sensitive", None, "n/a"),
])
def test_agreement_with_the_paper(claim, paper, word):
    from supcon_ray.stats.agreement import direction_agreement

    assert direction_agreement(claim, paper) == word


def test_static_figure_bad_input(tmp_path, capsys, monkeypatch):
    folder = _write_study(tmp_path, factors={"lr": FACTORS["lr"]})
    assert main([str(folder), "--figure", str(tmp_path / "fig.jpg")]) == 2
    assert "--figure" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "kaleido", None)  # as if not installed
    assert main([str(folder), "--figure", str(tmp_path / "fig.svg")]) == 2
    assert "pip install -e '.[figures]'" in capsys.readouterr().err and not (tmp_path / "fig.svg").exists()


def test_static_figure_is_written(tmp_path):
    pytest.importorskip("kaleido", reason="kaleido not installed: pip install -e '.[figures]'")
    if _chromium() is None:
        pytest.skip("Chromium not installed (apt-get install chromium): kaleido cannot export")
    folder = _write_study(tmp_path, factors={"lr": FACTORS["lr"]})
    assert main([str(folder), "--figure", str(tmp_path / "fig.svg")]) == 0
    svg = (tmp_path / "fig.svg").read_text()
    assert svg.startswith("<svg") and "synthetic / lr" in svg


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
    page, _ = build_report(str(folder))
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(_chromium_cmd(binary, profile) + ["--enable-logging=stderr", "--v=0", "--dump-dom", url],
                             capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"Uncaught|Error|error", line)]
    assert not errors, errors
    html = dom.stdout
    expected = ["fig-sensitivity", "fig-settings", "fig-learning-curves"]  # no sampled search: no importance
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


def test_many_factors_and_studies_render():
    from supcon_ray.analysis import analyze_entries
    from supcon_ray.reporting import plots

    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        name = f"f{i}"
        for loss in ("ce", "supcon"):
            for k in range(3):
                rows += [{"study": "s", "factor": name, "setting": f"{name}={k}", "loss": loss, "seed": r,
                          "status": "completed", "test_top1": rng.uniform(0.5, 0.9)} for r in range(2)]
    factors = analyze_entries(pd.DataFrame(rows), "test_top1", sensitivity=False).factors
    fig = plots.fig4a(pd.DataFrame(rows), factors, "test_top1")  # 14 rows of panels: plotly refused this before
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 40 and titles == [plots.panel_title(p) for p in plots.panels(factors)]
    assert titles[0].startswith("s / f0<br>these settings: ") and titles[0].endswith("; beyond: cannot tell")


def test_importance_is_fitted_to_sampled_searches_only():
    from supcon_ray.stats.importance import importance, sampled

    rng = np.random.default_rng(1)
    rows = [{"loss": "ce", "lr": lr, "optimizer": opt, "design": design,
             "test_top1": 0.5 + 0.2 * np.log10(lr) + rng.normal(0, 0.005)}
            for design in ("search:random", "one_factor") for opt in ("sgd", "lars")
            for lr in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)]
    df = pd.DataFrame(rows)
    assert set(sampled(df)["design"]) == {"search:random"}
    out = importance(sampled(df), "test_top1", ["lr", "optimizer"])["ce"]
    assert out["lr"]["p_value"] < 0.05 and out["lr"]["above_noise"]  # a real effect against permuted metrics
    assert out["optimizer"]["p_value"] > out["lr"]["p_value"] and not out["optimizer"]["above_noise"]


def test_planner_simulates_each_settings_own_seed_noise():
    from supcon_ray.stats.power import SEEDS, Measured, power

    # quiet settings and one in nine that carries the noise (a collapse): planning from the quiet std alone
    # (what the pooled field says here) promises power that the noisy setting takes away
    stds = (0.002,) * 8 + (0.08,)
    quiet = Measured(seed_std_ce=0.002, seed_std_supcon=0.002, spread_supcon=0.02)
    uneven = Measured(seed_std_ce=0.002, seed_std_supcon=0.002, spread_supcon=0.02, seed_stds_ce=stds,
                      seed_stds_supcon=stds)
    p_quiet, p_uneven = (power(m, 9, 3, 2.0, sims=40)["these_settings"] for m in (quiet, uneven))
    assert p_quiet >= 0.9 and p_uneven <= p_quiet - 0.3, (p_quiet, p_uneven)
    assert max(SEEDS) > 5  # it can propose more seeds than the studies run


def test_planner_reads_a_study_and_finds_the_deciding_design(tmp_path, capsys):
    from supcon_ray.power import main as power_main
    from supcon_ray.stats.power import Measured, power

    m = Measured(seed_std_ce=0.01, seed_std_supcon=0.01, spread_supcon=0.02)
    strong = power(m, 3, 3, 4.0, sims=20)
    assert strong["these_settings"] >= 0.9 and strong["beyond"] == 0.0  # 3 settings can never decide "beyond"
    assert power(m, 12, 3, 4.0, sims=20)["beyond"] > 0.5
    folder = _write_study(tmp_path, factors={"optimizer": FACTORS["optimizer"]})
    assert power_main([str(folder), "--sims", "10", "--json", str(tmp_path / "plan.json")]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "## synthetic / optimizer" in text and "Smallest design with 80% power at ratio 2, for these settings" in text
    assert "simulating synthetic / optimizer (1 of 1)" in captured.err  # progress while it simulates
    plan = json.loads((tmp_path / "plan.json").read_text())["synthetic / optimizer"]
    assert {r["settings"] for r in plan["rows"]} >= {3, 6, 12} and plan["smallest_at_ratio_2"]["these_settings"]
    # each design priced: its analysed runs' trial-epochs; no hours, as these rows recorded no time
    epochs = TrainConfig().epochs
    assert all(c["trial_epochs"] == c["settings"] * c["seeds"] * 2 * epochs and c["hours"] is None for c in plan["cost"])
    assert f"| 6 x 3 |" in text and f"{6 * 3 * 2 * epochs:,} trial-epochs |" in text and "no time recorded" in text
    assert power_main([str(tmp_path / "missing")]) == 2


def test_the_planner_plans_at_the_level_of_the_reports_holm_family(tmp_path, capsys):
    from supcon_ray.power import family_size, main as power_main
    from supcon_ray.stats.power import Measured, plan

    # three factors comparing SupCon with CE, and their pooled answer: a family of 4
    pairs = {f"s / {f}": ("ce", "supcon") for f in ("lr", "optimizer", "augment")}
    assert family_size(list(pairs), pairs) == 4
    assert family_size(["s / lr"], {"s / lr": ("ce", "supcon")}) == 1  # one factor pools nothing
    m = Measured(seed_std_ce=0.01, seed_std_supcon=0.01, spread_supcon=0.01)
    alone = plan(m, sims=30, settings=(3,), seeds=(3,), ratios=(2.0,))
    in_family = plan(m, sims=30, settings=(3,), seeds=(3,), ratios=(2.0,), family_size=4)
    assert in_family["level"] == pytest.approx(0.0125) and alone["level"] == 0.05
    assert in_family["rows"][0]["these_settings"] < alone["rows"][0]["these_settings"]  # the same studies, a stricter level
    folder = _write_study(tmp_path, factors={"optimizer": FACTORS["optimizer"], "lr": FACTORS["lr"]})
    assert power_main([str(folder), "--sims", "10", "--json", str(tmp_path / "plan.json")]) == 0
    assert "Holm family of 3 answer(s)" in capsys.readouterr().out
    assert json.loads((tmp_path / "plan.json").read_text())["synthetic / lr"]["family_size"] == 3


def test_a_one_method_study_is_reported_with_its_own_answers(tmp_path):
    folder = _write_study(tmp_path, losses=("supcon",), factors={"lr": FACTORS["lr"]})
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "study": "synthetic", "losses": ["supcon"], "seeds": [0, 1, 2], "base": {"common": {"lr": 0.1}},
        "vary": {"lr": [v["lr"] for v in FACTORS["lr"]]}}))
    out, typed = build_report(str(folder), json_path=str(tmp_path / "s.json"))
    (f,) = typed.as_dict()["factors"]
    assert f["method"] == "supcon" and f["baseline"] is None
    assert f["these_settings"]["claim"] in ("moves", "no_detectable_effect") and f["these_settings"]["ratio"] is None
    assert f["drop"]["losses"]["supcon"]["base_setting"] == "lr=0.1" and f["drop"]["difference"] is None
    html = out.read_text()
    assert "Drop from the base" in html and "(supcon)" in html  # the panel title names the one method
    assert all(line for line in headline(typed))
