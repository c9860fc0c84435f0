"""Selection at a fraction of its cost: the ``fidelity`` block of a selection search (synchronous successive
halving with budgeted rungs, :mod:`supcon_ray.study.fidelity`), planned rung by rung from recorded rows."""

import itertools
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from supcon_ray.config import ConfigError
from supcon_ray.results.manifest import fingerprint, read_manifest
from supcon_ray.study import Study, load_study, protocol, study_as_yaml
from supcon_ray.study.fidelity import full_length_epochs, halve, planned_epochs, rung_epochs, rung_sizes
from supcon_ray.tune import main

HEAD = """
study: fid
dataset: digits
model: resnet-mini
losses: [supcon, ce]
seeds: [0, 1]
base:
  common: {epochs: 12, batch_size: 256, augment: basic, train_size: 400, test_size: 200}
  supcon: {lr: 0.1, linear_epochs: 1}
  ce: {lr: 0.1}
"""
BODY = """
tune_base:
  sampler: qmc
  budget: 8
  seeds: [1000, 1001]
  space: {lr: {loguniform: [0.01, 10.0]}}
  fidelity: {min_epochs: 2, reduction_factor: 3}
vary:
  optimizer: [sgd, lars]
  augment: [basic]
nuisance:
  optimizer: {sampler: grid, space: {lr: {choice: [0.001, 0.01, 0.1, 1.0, 10.0]}}, fidelity: {min_epochs: 3, reduction_factor: 2}}
"""


def write(tmp_path, body=BODY, head=HEAD):
    path = tmp_path / "fid.yaml"
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return path


# ------------------------------------------------------------------------------------- the rungs

def _brute_force(scores: list[float], epochs: int, m: int, r: int):
    """Successive halving written out plainly: (runs as (index, epochs), pick)."""
    alive, runs, e = list(range(len(scores))), [], m
    while True:
        e = min(e, epochs)
        runs += [(i, e) for i in alive]
        keep = 1 if e == epochs else math.ceil(len(alive) / r)
        # best score first; equal scores: the earlier configuration
        alive = sorted(sorted(alive, key=lambda i: (-scores[i][e], i))[:keep])
        if len(alive) == 1:
            return runs, alive[0]
        e *= r


@pytest.mark.parametrize("n, epochs, m, r", [(8, 5, 1, 3), (8, 12, 2, 3), (8, 12, 3, 2), (6, 5, 2, 3), (2, 4, 1, 2),
                                             (9, 27, 1, 3), (5, 10, 4, 2)])
def test_halving_matches_a_plain_loop_whatever_the_scores(n, epochs, m, r):
    rng = np.random.default_rng(n * 100 + epochs)
    for _ in range(200):
        # scores per configuration and rung; a few ties so that the tie rule is exercised
        scores = [{e: float(rng.integers(0, 4)) / 4 for e in rung_epochs(epochs, m, r)} for _ in range(n)]
        h = halve(n, epochs, m, r, lambda i, e: scores[i][e])
        runs, pick = _brute_force(scores, epochs, m, r)
        assert sorted(h.runs()) == sorted(runs) and h.pick == pick
        assert h.pick_epochs == max(e for _, e in runs) and h.pick_score == scores[pick][h.pick_epochs]
        # how many runs each rung has does not depend on the scores: the budget is known before the data
        sizes = [(e, sum(1 for _, x in runs if x == e)) for e in sorted({x for _, x in runs})]
        assert sizes == rung_sizes(n, epochs, m, r)
    assert planned_epochs(n, 2, epochs, m, r) == 2 * sum(e * k for e, k in rung_sizes(n, epochs, m, r))
    assert full_length_epochs(n, 2, epochs) == 2 * n * epochs


def test_a_rung_waits_for_every_run_and_a_recorded_rung_is_never_decided_again():
    scores = {(i, e): float(i) for i in range(8) for e in (2, 6, 12)}  # the last configuration is best everywhere
    missing = dict(scores)
    del missing[(3, 2)]  # one run of rung 0 not scored yet (running, or failed)
    h = halve(8, 12, 2, 3, lambda i, e: missing.get((i, e)))
    assert h.pick is None and h.rungs == [] and h.running == (2, list(range(8)))
    done = halve(8, 12, 2, 3, lambda i, e: scores[(i, e)])
    assert done.rungs[0]["promoted"] == [7, 6, 5] and done.pick == 7 and done.pick_epochs == 6
    # the manifest recorded rung 0 promoting 0, 1, 2 (rows since then read otherwise): it stands
    recorded = [{"epochs": 2, "alive": list(range(8)), "scores": [0.0] * 8, "promoted": [0, 1, 2]}]
    again = halve(8, 12, 2, 3, lambda i, e: scores[(i, e)], recorded)
    assert again.rungs[0] is recorded[0] and again.pick == 2
    assert sorted(again.runs()) == sorted([(i, 2) for i in range(8)] + [(0, 6), (1, 6), (2, 6)])


# ------------------------------------------------------------------------------------ the protocol

TRUE_LR = {"supcon": 1.0, "ce": 0.1}


def _score(spec, noise=0.0, rng=None):
    """A validation score whose optimum in lr is known per loss; more epochs score higher, and budgeted rungs
    rank the learning rates as the full length does."""
    lr, e = spec.train["lr"], spec.train["epochs"]
    value = 0.9 - 0.1 * (math.log10(lr) - math.log10(TRUE_LR[spec.loss])) ** 2 - 0.2 / e
    return value + (noise * float(rng.standard_normal()) if rng is not None else 0.0)


def _rows(specs, score):
    return pd.DataFrame([{"trial_id": s.trial_id, "loss": s.loss, "seed": s.seed, "factor": s.factor,
                          "setting": s.setting, "phase": str(s.phase), "status": "completed", "val_top1": score(s),
                          "lr": s.train["lr"], "epochs": s.train["epochs"], "optimizer": s.train["optimizer"]}
                         for s in specs])


def _run(study, score, stop_after=None, decisions=None, rows=None):
    """Run the protocol on made-up rows as the runner does: plan, record the planned runs, plan again while a
    search with fidelity has no pick, then decide; ``stop_after``: record only that many new runs (a kill)."""
    decisions = dict(decisions or {})
    rows = rows if rows is not None else pd.DataFrame()
    recorded = 0
    for step in protocol.STEPS:
        while True:
            planned = protocol.plan(study, step, decisions, rows if len(rows) else None)
            for name, rungs in planned.rungs.items():  # each rung recorded once, as the runner does
                have = decisions.setdefault("rungs", {}).setdefault(name, [])
                have += rungs[len(have):]
            done = set(rows["trial_id"]) if len(rows) else set()
            todo = [s for s in planned.specs if s.trial_id not in done]
            if stop_after is not None and recorded + len(todo) > stop_after:
                todo = todo[:stop_after - recorded]
                rows = pd.concat([rows, _rows(todo, score)], ignore_index=True)
                return decisions, rows, None
            if not todo:  # nothing new: every search has its pick (or a rung cannot decide)
                break
            recorded += len(todo)
            rows = pd.concat([rows, _rows(todo, score)], ignore_index=True)
        decisions.update(protocol.select(study, step, planned, rows))
    return decisions, rows, planned


def test_a_search_with_fidelity_runs_its_rungs_and_picks_the_best_at_the_last(tmp_path):
    study = load_study(write(tmp_path))
    decisions, rows, _ = _run(study, _score)
    step1 = rows[rows["phase"] == "tune_base"]
    for loss in study.losses:
        g = step1[step1["loss"] == loss]
        # rungs at 2 and 6 of 12 epochs with 8 and 3 configurations, each on both selection seeds
        assert g.groupby("epochs").size().to_dict() == {2: 16, 6: 6}
        assert g["epochs"].mul(1).sum() == planned_epochs(8, 2, 12, 2, 3) == 68  # of 192 at full length
        base = decisions["bases"][loss]
        # the pick is the best of the last rung, independently: the lr closest to the true optimum among them
        last = g[g["epochs"] == 6]
        assert base["values"]["lr"] == last.loc[(last["lr"].map(math.log10) - math.log10(TRUE_LR[loss])).abs().idxmin(), "lr"]
        assert base["fidelity"] == {"method": "budgeted", "min_epochs": 2, "reduction_factor": 3, "epochs": 6,
                                    "rungs": 2, "trial_epochs": 68, "full_length_trial_epochs": 192}
        assert sorted(base["trial_ids"]) == sorted(last[last["lr"] == base["values"]["lr"]]["trial_id"])
        assert base["mean"] == pytest.approx(last[last["lr"] == base["values"]["lr"]]["val_top1"].mean())
        assert base["margin"]["configurations"] == 3  # the lead over the rung that decided it
        rungs = decisions["rungs"][f"tune_base/{loss}"]
        assert [r["epochs"] for r in rungs] == [2, 6] and [len(r["promoted"]) for r in rungs] == [3, 1]
    # every nuisance search: rungs at 3, 6 and 12 epochs with 5, 3 and 2 configurations (R = 2)
    nz = rows[rows["phase"] == "nuisance"]
    for (loss, setting), g in nz.groupby(["loss", "setting"]):
        assert g.groupby("epochs").size().to_dict() == {3: 5, 6: 3, 12: 2}, (loss, setting)
    for pick in decisions["nuisance"]:
        assert pick["complete"] and pick["best"]["fidelity"]["epochs"] == 12 and pick["configurations"] == 5
    # fidelity never touches what is analysed: every study-phase run (replicates too) trains for 12 epochs
    analysed = rows[rows["phase"] == "study"]
    assert len(analysed) and (analysed["epochs"] == 12).all()
    assert len(rows) == protocol.planned_trial_count(study)  # the dry run's count is what runs


def test_the_same_study_makes_the_same_decisions_and_a_killed_one_resumes_to_them(tmp_path):
    study = load_study(write(tmp_path))
    rng = np.random.default_rng(1)
    noisy = {}

    def score(s):  # noisy, but one value per run: a re-run of a trial records what it recorded
        return noisy.setdefault(s.trial_id, _score(s, 0.05, rng))

    whole, rows, _ = _run(study, score)
    again, rows_again, _ = _run(study, score)
    assert json.dumps(whole, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert list(rows["trial_id"]) == list(rows_again["trial_id"])
    for stop in (5, 16, 20, 30, 61):  # inside rung 0, at its end, inside rung 1, in the nuisance rungs
        partial, part_rows, _ = _run(study, score, stop_after=stop)
        assert len(part_rows) == stop
        resumed, all_rows, _ = _run(study, score, decisions=partial, rows=part_rows)
        assert json.dumps(resumed, sort_keys=True) == json.dumps(whole, sort_keys=True), stop
        assert all_rows["trial_id"].is_unique and set(all_rows["trial_id"]) == set(rows["trial_id"])


def test_a_rung_with_a_failed_run_decides_nothing(tmp_path):
    study = load_study(write(tmp_path))
    planned = protocol.plan(study, "tune_base", {})
    rows = _rows(planned.specs, _score)
    rows.loc[0, "status"] = "failed"
    failed_loss = rows.loc[0, "loss"]
    again = protocol.plan(study, "tune_base", {}, rows)
    stuck = again.halved[f"tune_base/{failed_loss}"].halving
    assert stuck.rungs == [] and stuck.running[0] == 2 and again.pending  # nothing promoted on an unequal budget
    assert [s.trial_id for s in again.specs if s.loss == failed_loss] == [i for i in planned.ids if i.startswith(failed_loss)]
    other = next(loss for loss in study.losses if loss != failed_loss)
    assert again.halved[f"tune_base/{other}"].halving.running[0] == 6  # the other loss's search goes on
    with pytest.raises(protocol.StepIncomplete, match="rung at 2 epochs"):
        protocol.select(study, "tune_base", again, rows)


# ----------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("edit, needle", [
    ("fidelity: {min_epochs: 2, reduction_factor: 3}", None),
    ("fidelity: {min_epochs: 12, reduction_factor: 3}", "tune_base.fidelity.min_epochs: 12 is not below the 12 epochs every run of the search trains for; must be 1 to 11"),
    ("fidelity: {min_epochs: 2, reduction_factor: 1}", "tune_base.fidelity.reduction_factor"),
    ("fidelity: {min_epochs: 0}", "tune_base.fidelity.min_epochs"),
    ("fidelity: {min_epochs: 2, reduction: 3}", "tune_base.fidelity.reduction"),
    ("fidelity: {min_epochs: 2, method: asha}", "tune_base.fidelity.method"),
])
def test_a_bad_fidelity_block_exits_2_naming_the_key_and_what_is_allowed(tmp_path, capsys, edit, needle):
    body = BODY.replace("fidelity: {min_epochs: 2, reduction_factor: 3}", edit)
    code = main(["--space", str(write(tmp_path, body)), "--dry-run"])
    out = capsys.readouterr()
    if needle is None:
        assert code == 0 and "rungs at 2, 6 of 12 epochs with 8, 3 configurations" in out.out
        return
    assert code == 2 and needle in out.err, out.err
    if "reduction_factor" in needle:
        assert "greater than or equal to 2" in out.err


@pytest.mark.parametrize("body, needle", [
    # the factor's value is the number of epochs
    ("vary:\n  epochs: [6, 12]\nnuisance:\n  epochs: {sampler: grid, space: {lr: {choice: [0.1, 1.0]}}, "
     "fidelity: {min_epochs: 2}}\n", "nuisance.epochs.fidelity: factor 'epochs' sets the number of epochs"),
    ("vary:\n  optimizer: [sgd, {optimizer: lars, epochs: 6}]\nnuisance:\n  optimizer: {sampler: grid, space: "
     "{lr: {choice: [0.1, 1.0]}}, fidelity: {min_epochs: 2}}\n", "nuisance.optimizer.fidelity: factor 'optimizer' sets the number of epochs"),
    ("tune_base: {sampler: tpe, budget: 4, space: {lr: {loguniform: [0.01, 1.0]}}, fidelity: {min_epochs: 2}}\n"
     "vary:\n  optimizer: [sgd]\n", "tune_base.fidelity: needs its configurations drawn up front"),
    ("tune_base: {sampler: random, budget: 4, space: {lr: {loguniform: [0.01, 1.0]}, epochs: {int: [2, 12]}}, "
     "fidelity: {min_epochs: 2}}\nvary:\n  optimizer: [sgd]\n", "tune_base.fidelity: the search's space tunes epochs"),
])
def test_fidelity_where_it_cannot_apply_exits_2(tmp_path, capsys, body, needle):
    assert main(["--space", str(write(tmp_path, body)), "--dry-run"]) == 2
    assert needle in capsys.readouterr().err


def test_rungs_that_would_cost_more_than_full_length_are_refused(tmp_path):
    # 5 configurations: 5 at 5 epochs, 3 at 10 and 2 at 12 train 79 epochs per seed against 60 at full length
    body = BODY.replace("{min_epochs: 3, reduction_factor: 2}", "{min_epochs: 5, reduction_factor: 2}")
    with pytest.raises(ConfigError, match=r"nuisance.optimizer.fidelity: rungs at 5, 10, 12 of 12 epochs would train 79 "
                                          r"trial-epochs against 60 at full length"):
        load_study(write(tmp_path, body))


def test_losses_with_different_lengths_would_get_different_budgets_and_are_refused(tmp_path):
    head = HEAD.replace("supcon: {lr: 0.1, linear_epochs: 1}", "supcon: {lr: 0.1, linear_epochs: 1, epochs: 8}")
    with pytest.raises(ConfigError, match=r"tune_base.fidelity: its runs would train for different full lengths "
                                          r"\(supcon 8, ce 12\)"):
        load_study(write(tmp_path, head=head))


def test_without_fidelity_nothing_changes():
    """The key left out changes no fingerprint, no study.yaml and no trial id: every committed folder's recorded
    fingerprint is still its study file's (trial ids: test_the_published_studies_replan_to_their_recorded_trial_ids)."""
    from supcon_ray.plugins import load_plugins

    root = Path(__file__).resolve().parents[2]
    folders = sorted(p.parent for p in (root / "docs").glob("*/*/manifest.json"))
    assert len(folders) >= 7
    for folder in folders:
        data = yaml.safe_load((folder / "study.yaml").read_text())
        if data.get("plugins"):
            load_plugins(data["plugins"], str(root / "search_spaces"))
        study = Study.model_validate(data)
        manifest = read_manifest(str(folder))
        assert fingerprint(study, manifest.fingerprint.get("plugins")) == manifest.fingerprint, folder
        if study.tune_base is None or study.tune_base.fidelity is None:  # (the live fidelity folder sets it)
            assert "fidelity:" not in study_as_yaml(study)
