"""The two-stage protocol: stage 1 picks each loss's base on an equal budget, stage 2 starts there;
nuisance re-tuning per setting; resume across stages; failed trials re-run; unique trial ids."""

import json
import textwrap
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from supcon_ray import protocol
from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.study import draw_design, load_study, plan_trials

HEAD = """
study: proto
dataset: digits
model: resnet-mini
losses: [supcon, ce]
seeds: [0, 1]
base:
  common: {epochs: 1, batch_size: 256, augment: basic}
  supcon: {lr: 0.1, linear_epochs: 1}
  ce: {lr: 0.1}
"""


def write(tmp_path, body, head=HEAD, name="proto.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return path


# ------------------------------------------------------------------------------------------ ids

def test_close_floats_get_distinct_ids_and_labels(tmp_path):
    study = load_study(write(tmp_path, "vary:\n  lr: [0.10001, 0.10002, 0.1]\n"))
    specs = plan_trials(study)
    assert len(specs) == 3 * 2 * 2 and len({s.trial_id for s in specs}) == len(specs)
    assert {s.setting for s in specs} == {"lr=0.10001", "lr=0.10002", "lr=0.1"}
    assert sorted({s.train["lr"] for s in specs}) == [0.1, 0.10001, 0.10002]


def test_repeated_random_draws_are_dropped_and_reported(tmp_path):
    # 2 x 2 = 4 distinct points; asking for 32 random draws used to plan 32 trials with 4 distinct ids
    body = ("search:\n  sampler: random\n  num_samples: 32\n  seed: 1\n"
            "  space: {lr: {choice: [0.05, 0.1]}, augment: {choice: [basic, simaugment]}}\n")
    study = load_study(write(tmp_path, body))
    design = draw_design("random", study.search.space, 32, 1)
    assert len(design.configs) == 4 and design.duplicates > 0
    assert "identical draw(s) dropped" in design.note and "only 4 distinct" in design.note
    keys = {json.dumps(c, sort_keys=True) for c in design.configs}
    assert len(keys) == 4
    specs = plan_trials(study)
    assert len(specs) == 4 * 2 * 2 and len({s.trial_id for s in specs}) == len(specs)


def test_a_setting_listed_twice_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="same configuration"):
        plan_trials(load_study(write(tmp_path, "vary:\n  optimizer: [sgd, lars, sgd]\n")))


def test_stage_ids_differ_for_the_same_configuration(tmp_path):
    body = ("tune_base: {sampler: random, budget: 2, seeds: [0], space: {weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}}\n"
            "vary:\n  optimizer: [sgd]\n")
    study = load_study(write(tmp_path, body))
    s1 = protocol.plan_stage1(study)
    best = {loss: {"values": {"weight_decay": next(s.train["weight_decay"] for s in s1 if s.loss == loss)}}
            for loss in study.losses}
    s2 = protocol.plan_stage2(study, best)
    same = [(a, b) for a in s1 for b in s2 if a.train == b.train]
    assert same, "the stage-2 base trial at seed 0 repeats a stage-1 configuration"
    assert all(a.trial_id != b.trial_id for a, b in same)


# ------------------------------------------------------------------------------------ planning

def test_stage1_budget_is_equal_per_loss_and_ce_skips_contrastive_keys(tmp_path):
    body = ("tune_base:\n  sampler: qmc\n  budget: 5\n  seeds: [0, 3]\n"
            "  space: {lr: {loguniform: [0.01, 1.0]}, temperature: {uniform: [0.05, 0.5]}}\n"
            "vary:\n  optimizer: [sgd, lars]\n")
    study = load_study(write(tmp_path, body))
    specs = protocol.plan_stage1(study)
    per_loss = pd.Series([s.loss for s in specs]).value_counts().to_dict()
    assert per_loss == {"supcon": 10, "ce": 10}
    assert protocol.stage1_budget(study) == {"supcon": 5, "ce": 5}
    assert {s.phase for s in specs} == {"tune_base"} and {s.seed for s in specs} == {0, 3}
    ce_settings = {s.setting for s in specs if s.loss == "ce"}
    assert len(ce_settings) == 5 and not any("temperature" in x for x in ce_settings)
    assert all("temperature" in s.setting for s in specs if s.loss == "supcon")


def test_stage2_starts_from_the_tuned_base_with_relative_settings(tmp_path):
    body = ("tune_base: {sampler: random, budget: 3, seeds: [0], space: {lr: {loguniform: [0.01, 1.0]}}}\n"
            "vary:\n  lr: [x0.5, x1, x2]\n  optimizer: [sgd, {optimizer: lars, lr: x3}]\n")
    study = load_study(write(tmp_path, body))
    bases = {"supcon": {"values": {"lr": 0.4}}, "ce": {"values": {"lr": 0.02}}}
    specs = protocol.plan_stage2(study, bases)
    got = {(s.loss, s.setting): s.train["lr"] for s in specs}
    assert got[("supcon", "lr=x0.5")] == pytest.approx(0.2) and got[("ce", "lr=x2")] == pytest.approx(0.04)
    assert got[("ce", "optimizer=sgd")] == 0.02 and got[("supcon", "optimizer=lars,lr=x3")] == pytest.approx(1.2)
    assert {s.phase for s in specs} == {"study"}


def test_nuisance_searches_are_equal_per_setting_and_loss(tmp_path):
    body = ("vary:\n  optimizer: [sgd, lars, rmsprop]\n  augment: [basic]\n"
            "nuisance:\n  optimizer: {sampler: random, budget: 3, seed: 2, space: {lr: {loguniform: [1.0e-3, 1.0]}}}\n")
    study = load_study(write(tmp_path, body))
    specs = protocol.plan_stage2(study, None)
    nz = [s for s in specs if s.phase == "nuisance"]
    assert len(nz) == 3 * 2 * 3 * 2 and {s.factor for s in nz} == {"optimizer"}
    assert all(s.phase == "study" for s in specs if s.factor == "augment")
    per = pd.DataFrame([{"loss": s.loss, "setting": s.setting, "lr": s.train["lr"]} for s in nz])
    lrs = per.groupby(["loss", "setting"])["lr"].apply(lambda x: tuple(sorted(set(x))))
    assert lrs.nunique() == 1 and len(lrs.iloc[0]) == 3  # the same 3 learning rates for every setting and loss
    assert len({s.trial_id for s in specs}) == len(specs)


def _rows(specs, val):
    return pd.DataFrame([{"trial_id": s.trial_id, "loss": s.loss, "seed": s.seed, "factor": s.factor,
                          "setting": s.setting, "phase": s.phase, "in_stats": s.phase == "study",
                          "status": "completed", "val_top1": val(s), "test_top1": 0.5, **{
                              k: s.train[k] for k in ("lr", "weight_decay", "temperature")}} for s in specs])


def test_pick_bases_is_the_best_validation_mean_over_seeds(tmp_path):
    body = ("tune_base:\n  sampler: random\n  budget: 6\n  seeds: [0, 1, 2]\n"
            "  space: {lr: {loguniform: [0.01, 1.0]}, weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}\n"
            "vary:\n  optimizer: [sgd]\n")
    study = load_study(write(tmp_path, body))
    rng = np.random.default_rng(0)
    noise = {}
    trials = _rows(protocol.plan_stage1(study), lambda s: noise.setdefault(s.trial_id, float(rng.uniform())))
    bases = protocol.pick_bases(study, trials)
    for loss in study.losses:
        # independent brute force: every configuration's mean over its seeds
        best, best_mean = None, -1.0
        for lr in set(trials[trials.loss == loss].lr):
            runs = trials[(trials.loss == loss) & (trials.lr == lr)]
            assert len(runs) == 3
            if runs.val_top1.mean() > best_mean:
                best, best_mean = runs.iloc[0], runs.val_top1.mean()
        assert bases[loss]["values"] == {"lr": best.lr, "weight_decay": best.weight_decay}
        assert bases[loss]["mean"] == pytest.approx(best_mean) and bases[loss]["configurations"] == 6
        assert len(bases[loss]["trial_ids"]) == 3 and bases[loss]["source"] == protocol.BASE_FROM_STAGE1
    # a failed trial (or a missing one) means no base is picked on an unequal budget
    failed = trials.copy()
    failed.loc[3, "status"] = "failed"
    with pytest.raises(protocol.StageIncomplete, match="1 failed"):
        protocol.pick_bases(study, failed)
    with pytest.raises(protocol.StageIncomplete):
        protocol.pick_bases(study, trials.drop(index=0))


def test_selection_and_stats_trials(tmp_path):
    body = ("vary:\n  optimizer: [sgd, lars]\n  augment: [basic, simaugment]\n"
            "nuisance:\n  optimizer: {sampler: grid, space: {lr: {choice: [0.01, 0.1, 1.0]}}}\n"
            "tune_base: {sampler: random, budget: 2, seeds: [0], space: {weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}}\n")
    study = load_study(write(tmp_path, body))
    bases = {loss: {"values": {"weight_decay": 1e-4}} for loss in study.losses}
    specs = protocol.plan_stage2(study, bases)
    score = {0.01: 0.3, 0.1: 0.9, 1.0: 0.6}  # lr 0.1 best on average, but not for every seed below
    trials = pd.concat([_rows(protocol.plan_stage1(study), lambda s: 0.5),
                        _rows(specs, lambda s: score[s.train["lr"]] + (0.5 if s.train["lr"] == 1.0 and s.seed == 0 else 0)
                              if s.phase == "nuisance" else 0.7)], ignore_index=True)
    selection = protocol.select_nuisance(study, specs, trials)
    assert len(selection["settings"]) == 2 * 2 and all(e["complete"] for e in selection["settings"])
    assert {json.dumps(e["best"]["nuisance"]) for e in selection["settings"]} == {'{"lr": 0.1}'}
    (tmp_path / "selection.json").write_text(json.dumps(selection))
    used = protocol.stats_trials(trials, str(tmp_path))
    assert set(used["phase"]) == {"study", "nuisance"}
    assert (used[used.phase == "nuisance"]["lr"] == 0.1).all()
    # per setting and loss: exactly its seeds' replicates of one configuration enter the statistics
    assert used[used.phase == "nuisance"].groupby(["loss", "setting"]).size().eq(2).all()
    assert len(used[used.phase == "study"]) == 2 * 2 * 2
    # an unfinished search selects nothing for that setting (and so adds none of its runs)
    partial = trials.drop(index=trials.index[(trials.phase == "nuisance") & (trials.setting == "optimizer=lars")][:1])
    entries = protocol.select_nuisance(study, specs, partial)["settings"]
    assert sum(not e["complete"] for e in entries) == 1
    assert [e["best"] for e in entries if not e["complete"]] == [None]


def test_rows_without_protocol_columns_all_enter_the_statistics(tmp_path):
    old = pd.DataFrame({"trial_id": ["a", "b"], "phase": [None, None], "in_stats": [None, None]})
    assert len(protocol.stats_trials(old, str(tmp_path))) == 2


def test_recorded_bases_are_refused_if_the_tuning_stage_changed(tmp_path):
    body = ("tune_base: {sampler: random, budget: 2, seeds: [0], space: {lr: {loguniform: [0.01, 1.0]}}}\n"
            "vary:\n  optimizer: [sgd]\n")
    study = load_study(write(tmp_path, body))
    from supcon_ray.study import study_as_yaml

    bases = {loss: {"source": protocol.BASE_FROM_STAGE1, "values": {"lr": 0.3},
                    "tune_base": study.tune_base.model_dump(mode="json")} for loss in study.losses}
    text = study_as_yaml(study, bases)
    assert protocol.recorded_bases(text, study) == bases
    assert protocol.recorded_bases(study_as_yaml(study), study) is None
    changed = load_study(write(tmp_path, body.replace("budget: 2", "budget: 3"), name="b.yaml"))
    with pytest.raises(ConfigError, match="tune_base: differs"):
        protocol.recorded_bases(text, changed)
    # bases from a study without a tuning stage are not reused once one is added
    plain = load_study(write(tmp_path, "vary:\n  optimizer: [sgd]\n", name="c.yaml"))
    with pytest.raises(ConfigError, match="tune_base: differs"):
        protocol.recorded_bases(study_as_yaml(plain, protocol.file_bases(plain)), study)


# ------------------------------------------------------------------------------- end to end

TWO_STAGE = """
tune_base:
  sampler: qmc
  budget: 2
  seeds: [0, 1]
  space: {lr: {loguniform: [0.01, 0.3]}, weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}
vary:
  optimizer: [sgd]
  augment: [basic]
nuisance:
  optimizer: {sampler: grid, space: {lr: {choice: [0.003, 0.05]}}}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2, max_failures: 0}
"""


@pytest.mark.ray
def test_two_stage_study_resume_between_stages_and_failed_rerun(ray_session, tmp_path, monkeypatch, capsys):
    from supcon_ray.runner import record_failures
    from supcon_ray.storage import ResultStore
    from supcon_ray.tune import main

    head = HEAD.replace("seeds: [0, 1]", "seeds: [0]")
    space = write(tmp_path, TWO_STAGE, head=head)
    storage = tmp_path / "results"
    folder = storage / "proto"
    args = ["--space", str(space), "--storage", str(storage), "--no-report"]

    # 1. a Ctrl-C right after stage 1 ends (before stage 2 is planned)
    real_plan = protocol.plan_stage2

    def interrupt_once(study, bases):
        if bases is not None:  # run_study plans stage 2 from the bases it has just recorded
            raise KeyboardInterrupt
        return real_plan(study, bases)

    monkeypatch.setattr(protocol, "plan_stage2", interrupt_once)
    assert main(args) == 130
    monkeypatch.setattr(protocol, "plan_stage2", real_plan)
    stage1 = pd.read_parquet(folder / "trials")
    assert len(stage1) == 2 * 2 * 2 and set(stage1["phase"]) == {"tune_base"} and not stage1["in_stats"].any()
    assert stage1.groupby("loss").size().to_dict() == {"ce": 4, "supcon": 4}  # equal budgets per loss
    bases = protocol.load_bases(str(folder))
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "trials").glob("*.parquet")}
    capsys.readouterr()

    # 2. resume: stage 1 is not run again and the base does not change
    assert main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "stage 1 already recorded" in out
    assert protocol.load_bases(str(folder)) == bases
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "trials").glob("*.parquet") if p.name in stamps} == stamps
    trials = pd.read_parquet(folder / "trials")
    assert trials["trial_id"].is_unique and (trials["status"] == "completed").all()
    assert trials.groupby("phase").size().to_dict() == {"tune_base": 8, "nuisance": 2 * 2, "study": 2}

    # stage 2's base is the best stage-1 configuration by validation mean over seeds, per loss
    for loss in ("supcon", "ce"):
        s1 = trials[(trials.phase == "tune_base") & (trials.loss == loss)]
        means = s1.groupby(["lr", "weight_decay"])["val_top1"].mean()
        assert (s1.groupby(["lr", "weight_decay"]).size() == 2).all()  # both seeds of each configuration
        lr, wd = bases[loss]["values"]["lr"], bases[loss]["values"]["weight_decay"]
        assert means[(lr, wd)] == means.max()  # (on a tie, any of the best is right)
        assert bases[loss]["mean"] == pytest.approx(means.max())
        s2 = trials[(trials.phase != "tune_base") & (trials.loss == loss)]
        assert (s2["weight_decay"] == wd).all()
        assert (s2[s2.factor == "augment"]["lr"] == lr).all()  # the re-tuned optimizer factor has its own lr
        assert set(s2[s2.phase == "nuisance"]["lr"]) == {0.003, 0.05}

    # the statistics take ordinary stage-2 trials plus each setting's best nuisance configuration
    selection = json.loads((folder / "selection.json").read_text())
    assert len(selection["settings"]) == 2 and all(e["complete"] for e in selection["settings"])
    used = protocol.stats_trials(trials, str(folder))
    assert len(used) == 2 + 2 and set(used["phase"]) == {"study", "nuisance"}
    for e in selection["settings"]:
        runs = trials[(trials.phase == "nuisance") & (trials.loss == e["loss"]) & (trials.setting == e["setting"])]
        assert e["best"]["mean"] == pytest.approx(runs.groupby("lr")["val_top1"].mean().max())

    # 3. a failed trial (an infrastructure error) is run again on --resume; its error stays on record
    store = ResultStore(str(storage), "proto")
    victim = trials[trials.phase == "nuisance"].iloc[0]
    spec = {"trial_id": victim.trial_id, "loss": victim.loss, "seed": int(victim.seed), "factor": victim.factor,
            "setting": victim.setting, "design": victim.design, "phase": "nuisance",
            "train": {k: victim[k] for k in victim.index if k in TrainConfig.model_fields}}
    (folder / "trials" / f"{victim.trial_id}.parquet").unlink()
    assert record_failures(store, {victim.trial_id: (spec, "RuntimeError: node lost (simulated)")}, "proto") == 1
    assert store.failed_ids() == {victim.trial_id}
    assert main(args + ["--resume"]) == 0
    after = pd.read_parquet(folder / "trials")
    assert len(after) == len(trials) and after["trial_id"].is_unique and (after["status"] == "completed").all()
    attempts = pd.read_parquet(folder / "attempts")
    assert attempts["trial_id"].tolist() == [victim.trial_id] and attempts["status"].tolist() == ["failed"]
    assert "node lost" in attempts["error"].iloc[0]
    assert (after.set_index("trial_id").loc[victim.trial_id, "finished_at"]
            > datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert protocol.load_bases(str(folder)) == bases
