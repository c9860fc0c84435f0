"""The two-stage protocol: step 1 picks each loss's base on an equal budget, step 2 starts there;
nuisance re-tuning per setting; resume across stages; failed trials re-run; unique trial ids."""

import json
import textwrap
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from supcon_ray.study import protocol
from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.study import draw_design, load_study, plan_trials

HEAD = """
study: proto
dataset: digits
model: resnet-mini
losses: [supcon, ce]
seeds: [0, 1]
base:
  common: {epochs: 1, batch_size: 256, augment: basic, train_size: 400, test_size: 200}
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


def test_ids_name_what_a_trial_computes_not_where_it_runs(tmp_path):
    """Ids hash the configuration with the dataset as written and without resources, so a checkout moved
    elsewhere, or run with other resources, plans the same ids; the phase still tells two runs apart."""
    body = "vary:\n  optimizer: [sgd, lars]\n"
    head = HEAD.replace("dataset: digits", "dataset: parquet:data/cifar")
    here = load_study(write(tmp_path, body, head=head))
    (tmp_path / "moved").mkdir()
    moved = load_study(write(tmp_path / "moved", body + "resources: {cpus_per_worker: 2, workers_per_trial: 2}\n",
                             head=head))
    a, b = plan_trials(here), plan_trials(moved)
    assert [s.trial_id for s in a] == [s.trial_id for s in b]
    assert a[0].train["dataset"] == "parquet:data/cifar"  # as written: no machine path in ids or rows
    from supcon_ray.study import train_config

    assert train_config(asdict(a[0])).dataset == f"parquet:{tmp_path}/data/cifar"  # resolved where files open
    assert train_config(asdict(b[0])).dataset == f"parquet:{tmp_path}/moved/data/cifar"
    # the same configuration in two phases is two runs
    from supcon_ray.study import trial_id

    train = a[0].train
    assert trial_id("proto", "tune_base", "f", "l", train) != trial_id("proto", "study", "f", "l", train)
    digest = lambda i: i.rsplit("-", 1)[1]  # noqa: E731
    assert digest(trial_id("proto", "study", "lr", "lr=x1", train)) == digest(trial_id("proto", "study", "augment",
                                                                                      "augment=basic", train))
    tb = "tune_base: {sampler: random, budget: 2, seeds: [1000], space: {weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}}\n"
    study = load_study(write(tmp_path, tb + body, name="tb.yaml"))
    s1 = protocol.plan(study, "tune_base", {}).specs
    assert {s.seed for s in s1} == {1000}  # selection seeds, so no step-1 run is a step-2 replicate


# ------------------------------------------------------------------------------------ planning

def test_selection_seeds_default_disjoint_and_an_overlap_is_refused(tmp_path):
    body = ("tune_base: {sampler: qmc, budget: 2, space: {lr: {loguniform: [0.01, 1.0]}}}\n"
            "vary:\n  optimizer: [sgd, lars]\n"
            "nuisance:\n  optimizer: {sampler: grid, space: {lr: {choice: [0.01, 0.1]}}}\n")
    study = load_study(write(tmp_path, body))
    assert study.tune_base.seeds == [1000] and study.nuisance["optimizer"].seeds == [1000]
    for block, bad in (("tune_base", body.replace("budget: 2,", "budget: 2, seeds: [1],")),
                       ("nuisance.optimizer", body.replace("sampler: grid,", "sampler: grid, seeds: [1000, 0],"))):
        with pytest.raises(ConfigError, match=rf"{block}\.seeds: seed [01] is also a study seed"):
            load_study(write(tmp_path, bad, name="bad.yaml"))


def test_unequal_budgets_of_distinct_configurations_are_refused(tmp_path):
    # CE does not use temperature, so a choice space with it gives CE 2 distinct points against SupCon's 4
    body = ("tune_base:\n  sampler: random\n  budget: 4\n  seeds: [1000]\n"
            "  space: {lr: {choice: [0.01, 0.1]}, temperature: {choice: [0.1, 0.5]}}\n"
            "vary:\n  optimizer: [sgd, lars]\n")
    with pytest.raises(ConfigError, match=r"tune_base.space: the losses would get unequal budgets .*supcon 4, ce 2"):
        load_study(write(tmp_path, body))
    load_study(write(tmp_path, body.replace("budget: 4", "budget: 2"), name="ok.yaml"))  # both fill 2
    # TPE adapts and could suggest a discrete configuration twice: only float ranges are accepted
    tpe = body.replace("sampler: random", "sampler: tpe").replace("budget: 4", "budget: 2")
    with pytest.raises(ConfigError, match=r"tune_base.space.lr: the tpe sampler needs float ranges"):
        load_study(write(tmp_path, tpe, name="tpe.yaml"))
    search = ("search: {sampler: tpe, num_samples: 3, space: {batch_size: {int: [64, 256]}}}\n")
    with pytest.raises(ConfigError, match=r"search.space.batch_size: the tpe sampler needs float ranges"):
        load_study(write(tmp_path, search, name="tpe2.yaml"))


def test_step1_budget_is_equal_per_loss_and_ce_skips_contrastive_keys(tmp_path):
    body = ("tune_base:\n  sampler: qmc\n  budget: 5\n  seeds: [1000, 1003]\n"
            "  space: {lr: {loguniform: [0.01, 1.0]}, temperature: {uniform: [0.05, 0.5]}}\n"
            "vary:\n  optimizer: [sgd, lars]\n")
    study = load_study(write(tmp_path, body))
    specs = protocol.plan(study, "tune_base", {}).specs
    per_loss = pd.Series([s.loss for s in specs]).value_counts().to_dict()
    assert per_loss == {"supcon": 10, "ce": 10}
    assert protocol.step1_budget(study) == {"supcon": 5, "ce": 5}
    assert {s.phase for s in specs} == {"tune_base"} and {s.seed for s in specs} == {1000, 1003}
    ce_settings = {s.setting for s in specs if s.loss == "ce"}
    assert len(ce_settings) == 5 and not any("temperature" in x for x in ce_settings)
    assert all("temperature" in s.setting for s in specs if s.loss == "supcon")


def test_stage2_starts_from_the_tuned_base_with_relative_settings(tmp_path):
    body = ("tune_base: {sampler: random, budget: 3, space: {lr: {loguniform: [0.01, 1.0]}}}\n"
            "vary:\n  lr: [x0.5, x1, x2]\n  optimizer: [sgd, {optimizer: lars, lr: x3}]\n")
    study = load_study(write(tmp_path, body))
    bases = {"supcon": {"values": {"lr": 0.4}}, "ce": {"values": {"lr": 0.02}}}
    planned = protocol.plan(study, "study", {"bases": bases})
    got = {(s.loss, s.setting): s.train["lr"] for s in planned.specs}
    assert got[("supcon", "lr=x0.5")] == pytest.approx(0.2) and got[("ce", "lr=x2")] == pytest.approx(0.04)
    assert got[("supcon", "optimizer=lars,lr=x3")] == pytest.approx(1.2)
    assert {s.phase for s in planned.specs} == {"study"}
    # the base (lr x1 = optimizer sgd) is one trial per loss and seed, analysed under both factors
    entries = pd.DataFrame(planned.analysed)
    assert len(planned.specs) == (3 + 2 - 1) * 2 * 2 and len(entries) == (3 + 2) * 2 * 2
    shared = entries[entries.duplicated("trial_id", keep=False)]
    assert len(shared) == 2 * 2 * 2 and set(shared["setting"]) == {"lr=x1", "optimizer=sgd"}
    assert set(shared["trial_id"]) <= set(planned.ids)


def test_nuisance_searches_are_equal_per_setting_and_loss_and_picks_run_on_the_study_seeds(tmp_path):
    body = ("vary:\n  optimizer: [sgd, lars, rmsprop]\n  augment: [basic]\n"
            "nuisance:\n  optimizer: {sampler: random, budget: 3, seed: 2, seeds: [1000, 1001], "
            "space: {lr: {loguniform: [1.0e-3, 1.0]}}}\n")
    study = load_study(write(tmp_path, body))
    planned = protocol.plan(study, "study", {})
    nz = [s for s in planned.specs if s.phase == "nuisance"]
    assert len(nz) == 3 * 2 * 3 * 2 and {s.factor for s in nz} == {"optimizer"} and {s.seed for s in nz} == {1000, 1001}
    assert {e["trial_id"] for e in planned.analysed}.isdisjoint(s.trial_id for s in nz)  # selection runs: not analysed
    per = pd.DataFrame([{"loss": s.loss, "setting": s.setting, "lr": s.train["lr"]} for s in nz])
    lrs = per.groupby(["loss", "setting"])["lr"].apply(lambda x: tuple(sorted(set(x))))
    assert lrs.nunique() == 1 and len(lrs.iloc[0]) == 3  # the same 3 learning rates for every setting and loss
    picks = protocol.select_nuisance(study, planned.specs, _rows(planned.specs, lambda s: s.train["lr"]))
    replicates = protocol.plan(study, "replicates", {"nuisance": picks})
    assert len(replicates.specs) == 3 * 2 * 2 and {s.seed for s in replicates.specs} == {0, 1}
    assert {s.phase for s in replicates.specs} == {"study"} and len(replicates.analysed) == len(replicates.specs)
    for s in replicates.specs:  # each pick is the largest lr tried (val = lr here), run on the study seeds
        assert s.train["lr"] == max(lrs.iloc[0]) and s.nuisance == {"lr": max(lrs.iloc[0])}


def _rows(specs, val):
    return pd.DataFrame([{"trial_id": s.trial_id, "loss": s.loss, "seed": s.seed, "factor": s.factor,
                          "setting": s.setting, "phase": s.phase, "in_stats": s.phase == "study",
                          "status": "completed", "val_top1": val(s), "test_top1": 0.5, **{
                              k: s.train[k] for k in ("lr", "weight_decay", "temperature")}} for s in specs])


def test_pick_bases_is_the_best_validation_mean_over_seeds(tmp_path):
    body = ("tune_base:\n  sampler: random\n  budget: 6\n  seeds: [1000, 1001, 1002]\n"
            "  space: {lr: {loguniform: [0.01, 1.0]}, weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}\n"
            "vary:\n  optimizer: [sgd]\n")
    study = load_study(write(tmp_path, body))
    rng = np.random.default_rng(0)
    noise = {}
    specs = protocol.plan(study, "tune_base", {}).specs
    trials = _rows(specs, lambda s: noise.setdefault(s.trial_id, float(rng.uniform())))
    bases = protocol.pick_bases(study, trials, specs)
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
        assert len(bases[loss]["trial_ids"]) == 3 and bases[loss]["source"] == protocol.BASE_FROM_STEP1
        # how clearly it won, recorded with the decision: the lead over the runner-up, paired over the 3 seeds
        means = trials[trials.loss == loss].groupby("lr").val_top1.mean().sort_values()
        margin = bases[loss]["margin"]
        assert margin["margin"] == pytest.approx(means.iloc[-1] - means.iloc[-2]) and "3 selection seeds" in margin["se_basis"]
    # a failed trial (or a missing one) means no base is picked on an unequal budget
    failed = trials.copy()
    failed.loc[3, "status"] = "failed"
    with pytest.raises(protocol.StepIncomplete, match="1 failed"):
        protocol.pick_bases(study, failed, specs)
    with pytest.raises(protocol.StepIncomplete):
        protocol.pick_bases(study, trials.drop(index=0), specs)


def test_one_tie_rule_the_first_in_the_designs_order(tmp_path):
    assert protocol.best([(0.5, "a"), (0.7, "b"), (0.7, "c")]) == "b"
    assert protocol.best([(float("nan"), "a"), (float("nan"), "b")]) == "a"
    assert protocol.best([(float("nan"), "a"), (0.1, "b")]) == "b"
    body = ("tune_base: {sampler: qmc, budget: 4, space: {lr: {loguniform: [0.01, 1.0]}}}\n"
            "vary:\n  optimizer: [sgd, lars]\n"
            "nuisance:\n  optimizer: {sampler: grid, space: {lr: {choice: [0.5, 0.01, 0.1]}}}\n")
    study = load_study(write(tmp_path, body))
    s1 = protocol.plan(study, "tune_base", {}).specs
    bases = protocol.pick_bases(study, _rows(s1, lambda s: 0.5).iloc[::-1], s1)  # all tied, rows in reverse order
    for loss in study.losses:
        assert bases[loss]["values"]["lr"] == next(s.train["lr"] for s in s1 if s.loss == loss)
    planned = protocol.plan(study, "study", {"bases": bases})
    picks = protocol.select_nuisance(study, planned.specs, _rows(planned.specs, lambda s: 0.5).iloc[::-1])
    assert {p["best"]["nuisance"]["lr"] for p in picks} == {0.5}  # the grid's first point, as written


def test_picks_at_the_edge_of_their_space_are_flagged(tmp_path):
    body = ("tune_base: {sampler: qmc, budget: 4, space: {lr: {loguniform: [0.01, 1.0]}}}\n"
            "vary:\n  optimizer: [sgd, lars]\n"
            "nuisance:\n  optimizer: {sampler: grid, space: {lr: {choice: [0.003, 0.1, 3.0]}}}\n")
    study = load_study(write(tmp_path, body))
    decisions = {"bases": {"supcon": {"values": {"lr": 0.95}}, "ce": {"values": {"lr": 0.1}}},
                 "nuisance": [{"loss": "ce", "factor": "optimizer", "setting": "optimizer=lars", "best": {"nuisance": {"lr": 3.0}}},
                              {"loss": "supcon", "factor": "optimizer", "setting": "optimizer=lars", "best": {"nuisance": {"lr": 0.1}}}]}
    flags = protocol.edge_flags(study, decisions)
    assert [(f["stage"], f["loss"], f["side"]) for f in flags] == [("tune_base", "supcon", "largest"),
                                                                   ("nuisance", "ce", "largest")]
    assert "lr=3 picked for optimizer=lars is at the largest end of the space [0.003, 3]" in flags[1]["text"]


def test_the_statistics_read_exactly_the_manifests_entries(tmp_path):
    from supcon_ray.results.manifest import Manifest, analysed_rows

    trials = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "factor": ["lr", "lr", "optimizer", "optimizer"],
                           "setting": ["lr=x1", "lr=x2", "optimizer=lars", "optimizer=lars"],
                           "phase": ["study", "study", "nuisance", "study"], "in_stats": [True, True, False, True],
                           "test_top1": [0.1, 0.2, 0.3, 0.4]})
    m = Manifest("s", {}, analysed=[{"trial_id": "a", "factor": "lr", "setting": "lr=x1"},
                                    {"trial_id": "a", "factor": "optimizer", "setting": "optimizer=sgd"},
                                    {"trial_id": "d", "factor": "optimizer", "setting": "optimizer=lars"},
                                    {"trial_id": "zz", "factor": "lr", "setting": "lr=x3"}])  # planned, not recorded
    used = analysed_rows(trials, str(tmp_path), m)
    assert used["trial_id"].tolist() == ["a", "a", "d"]  # b is in_stats but not in the manifest: left out
    assert used["factor"].tolist() == ["lr", "optimizer", "optimizer"]
    assert used["setting"].tolist() == ["lr=x1", "optimizer=sgd", "optimizer=lars"]


def test_a_trials_folder_without_a_manifest_is_read_by_its_in_stats_column(tmp_path):
    from supcon_ray.results.manifest import analysed_rows, read_manifest

    old = pd.DataFrame({"trial_id": ["a", "b"], "phase": [None, None], "in_stats": [None, None]})
    assert len(analysed_rows(old, str(tmp_path))) == 2  # no phase: rows from before the column, all analysed
    (tmp_path / "study.yaml").write_text("study: s\nbases: {ce: {values: {lr: 0.1}}}\n")
    rows = pd.DataFrame({"trial_id": ["s1", "n1", "n2"], "phase": ["study", "nuisance", "nuisance"],
                         "in_stats": [True, False, False]})
    assert read_manifest(str(tmp_path)) is None  # a study file alone is no manifest
    assert analysed_rows(rows, str(tmp_path))["trial_id"].tolist() == ["s1"]
    assert analysed_rows(rows.drop(columns=["phase", "in_stats"]), str(tmp_path))["trial_id"].tolist() == ["s1", "n1", "n2"]


def test_resume_refuses_a_study_that_computes_something_else(tmp_path):
    from supcon_ray.results.manifest import Manifest, changed_keys, fingerprint, open_manifest, save_manifest
    from supcon_ray.results.storage import ResultStore

    study = load_study(write(tmp_path, "vary:\n  optimizer: [sgd]\n"))
    edited = load_study(write(tmp_path, "vary:\n  optimizer: [sgd]\n", head=HEAD.replace("{epochs: 1,", "{epochs: 2,"),
                              name="edited.yaml"))
    assert changed_keys(fingerprint(study), fingerprint(edited)) == ["base.common.epochs"]
    more = load_study(write(tmp_path, "vary:\n  optimizer: [sgd]\nresources: {cpus_per_worker: 2}\n", name="r.yaml"))
    assert changed_keys(fingerprint(study), fingerprint(more)) == []  # resources do not change what trials compute
    store = ResultStore(str(tmp_path / "results"), "proto")
    save_manifest(store, Manifest("proto", fingerprint(study), steps={"study": ["x"]}))
    assert open_manifest(store, study, resume=True).steps == {"study": ["x"]}
    with pytest.raises(ConfigError, match=r"--resume: .*changes what its trials compute.*: base\.common\.epochs\."):
        open_manifest(store, edited, resume=True)


# ------------------------------------------------------------------------------- end to end

TWO_STAGE = """
tune_base:
  sampler: qmc
  budget: 2
  seeds: [1000, 1001]
  space: {lr: {loguniform: [0.01, 0.3]}, weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}
vary:
  optimizer: [sgd]
  augment: [basic]
nuisance:
  optimizer: {sampler: grid, space: {lr: {choice: [0.003, 0.05]}}}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2, max_failures: 0}
"""


def _stamps(folder):
    return {p.name: p.stat().st_mtime_ns for p in (folder / "trials").glob("*.parquet")}


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.ray
def test_stages_interrupted_resumed_edited_and_moved(ray_session, tmp_path, monkeypatch, capsys):
    """The manifest is the study's one state: a Ctrl-C after step 1 or in step 2 resumes with the same
    decisions and every planned trial recorded once; an edit that changes what trials compute is refused
    (exit 2, naming the key, nothing added); an unchanged resume runs nothing and writes the same report;
    a copied folder resumes elsewhere without re-running anything; a failed trial runs again."""
    from supcon_ray.execution.runner import record_failures
    from supcon_ray.results.storage import ResultStore
    from supcon_ray.tune import main

    head = HEAD.replace("seeds: [0, 1]", "seeds: [0]")
    space = write(tmp_path, TWO_STAGE, head=head)
    storage = tmp_path / "results"
    folder = storage / "proto"
    args = ["--space", str(space), "--storage", str(storage), "--no-report"]
    real_plan = protocol.plan

    def interrupt_at(stage):
        def plan(study, at, decisions, *rows):
            real = (decisions.get("bases") or {}).get("ce", {}).get("source")  # not the dry count's placeholder
            if at == stage and real:
                raise KeyboardInterrupt
            return real_plan(study, at, decisions, *rows)
        return plan

    # 1. a Ctrl-C right after step 1 decides (before step 2 is planned)
    monkeypatch.setattr(protocol, "plan", interrupt_at("study"))
    assert main(args) == 130
    monkeypatch.setattr(protocol, "plan", real_plan)
    step1 = pd.read_parquet(folder / "trials")
    assert len(step1) == 2 * 2 * 2 and set(step1["phase"]) == {"tune_base"} and not step1["in_stats"].any()
    assert step1.groupby("loss").size().to_dict() == {"ce": 4, "supcon": 4}  # equal budgets per loss
    assert set(step1["seed"]) == {1000, 1001}  # selection seeds, not study seeds
    bases = _manifest(folder)["decisions"]["bases"]
    stamps = _stamps(folder)
    capsys.readouterr()

    # 2. a Ctrl-C in step 2 (after its nuisance picks, before their replicates) and a trial killed in flight
    monkeypatch.setattr(protocol, "plan", interrupt_at("replicates"))
    assert main(args + ["--resume"]) == 130
    monkeypatch.setattr(protocol, "plan", real_plan)
    assert "step 1 already recorded" in capsys.readouterr().out
    first = _manifest(folder)
    assert first["decisions"]["bases"] == bases and len(first["decisions"]["nuisance"]) == 2
    killed = first["stages"]["study"][0]
    (folder / "trials" / f"{killed}.parquet").unlink()
    assert main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "step 2: 6 trials planned, 5 already recorded, 1 to run" in out
    # the progress total is what this sitting runs (step 2's one trial and the 2 replicates), not
    # counting step 1's or step 2's recorded trials
    assert "[3/3] " in out, out
    done = _manifest(folder)
    assert done["decisions"] == first["decisions"]  # recorded once, never recomputed
    trials = pd.read_parquet(folder / "trials")
    planned = [i for ids in done["stages"].values() for i in ids]
    assert sorted(trials["trial_id"]) == sorted(planned) and len(set(planned)) == len(planned)
    assert {p: n for p, n in _stamps(folder).items() if p in stamps} == stamps  # step 1 never ran again
    assert trials.groupby("phase").size().to_dict() == {"tune_base": 8, "nuisance": 2 * 2, "study": 2 + 2}

    # step 2's base is the best step-1 configuration by validation mean over seeds, per loss
    for loss in ("supcon", "ce"):
        s1 = trials[(trials.phase == "tune_base") & (trials.loss == loss)]
        means = s1.groupby(["lr", "weight_decay"])["val_top1"].mean()
        lr, wd = bases[loss]["values"]["lr"], bases[loss]["values"]["weight_decay"]
        assert means[(lr, wd)] == means.max() and bases[loss]["mean"] == pytest.approx(means.max())
        s2 = trials[(trials.phase != "tune_base") & (trials.loss == loss)]
        assert (s2["weight_decay"] == wd).all() and (s2[s2.factor == "augment"]["lr"] == lr).all()
        assert set(s2[s2.phase == "nuisance"]["lr"]) == {0.003, 0.05} and set(s2[s2.phase == "nuisance"]["seed"]) == {1000}
    # the statistics read the ordinary trials and each pick's replicates on the study seed, nothing else
    from supcon_ray.results.manifest import analysed_rows

    used = analysed_rows(trials, str(folder))
    assert len(used) == 2 + 2 and set(used["phase"]) == {"study"} and set(used["seed"]) == {0}
    for pick in done["decisions"]["nuisance"]:
        runs = trials[(trials.phase == "nuisance") & (trials.loss == pick["loss"])]
        assert pick["best"]["mean"] == pytest.approx(runs.groupby("lr")["val_top1"].mean().max())
        rep = used[(used.loss == pick["loss"]) & (used.factor == "optimizer")]
        assert rep["lr"].tolist() == [pick["best"]["nuisance"]["lr"]]

    # 3. an edit that changes what trials compute: exit 2 naming the key, nothing added
    edited = write(tmp_path, TWO_STAGE, head=head.replace("{epochs: 1,", "{epochs: 2,"), name="edited.yaml")
    before = _stamps(folder)
    capsys.readouterr()
    assert main(["--space", str(edited), "--storage", str(storage), "--no-report", "--resume"]) == 2
    assert "base.common.epochs" in capsys.readouterr().err and _stamps(folder) == before

    # 4. unchanged: --resume runs nothing, and the report is byte-identical
    assert main(args[:-1] + ["--resume"]) == 0
    report = (folder / "report.html").read_bytes()
    assert main(args[:-1] + ["--resume"]) == 0
    assert (folder / "report.html").read_bytes() == report and _stamps(folder) == before

    # 5. the folder and the study file copied elsewhere: resume re-runs nothing
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(storage, moved / "results")
    shutil.copy(space, moved / "proto.yaml")
    copied = _stamps(moved / "results" / "proto")
    capsys.readouterr()
    assert main(["--space", str(moved / "proto.yaml"), "--storage", str(moved / "results"), "--no-report", "--resume"]) == 0
    out = capsys.readouterr().out
    assert " 0 to run" in out and "to run" in out and " 1 to run" not in out
    assert _stamps(moved / "results" / "proto") == copied
    assert len(pd.read_parquet(moved / "results" / "proto" / "trials")) == len(trials)

    # 6. a failed trial (an infrastructure error) is run again on --resume; its error stays on record
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
    assert _manifest(folder)["decisions"] == done["decisions"]

    # 7. publishing is a command: compacted Parquet, the manifest and the study file, no machine paths
    from supcon_ray.report import main as report_main

    out = tmp_path / "published"
    assert report_main([str(folder), "--export", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "epochs/epochs.parquet", "manifest.json", "study.yaml", "trials/trials.parquet"]
    for p in out.rglob("*"):
        if p.is_file():
            assert str(tmp_path).encode() not in p.read_bytes(), p
    assert len(pd.read_parquet(out / "trials")) == len(after)
    from supcon_ray.results.storage import read_results

    published = analysed_rows(read_results(str(out))[0].to_pandas(), str(out))
    assert published["trial_id"].tolist() == analysed_rows(after, str(folder))["trial_id"].tolist()


def test_resume_names_an_edited_plugin_and_counts_the_changes_it_does_not_list(tmp_path):
    """A plugin whose bytes changed is named as such (not as a changed key among others); with more than
    eight changed keys the message lists eight and counts the rest."""
    import copy

    from supcon_ray.results.manifest import Manifest, fingerprint, open_manifest, save_manifest
    from supcon_ray.results.storage import ResultStore

    (tmp_path / "plug.py").write_text("X = 1\n")
    study = load_study(write(tmp_path, "plugins: [plug.py]\nvary:\n  optimizer: [sgd]\n"))
    now = fingerprint(study)
    assert list(now["plugins"]) == ["plug.py"]
    edited = copy.deepcopy(now)
    edited["plugins"]["plug.py"] = "0" * 64  # the bytes recorded when the storage was started
    store = ResultStore(str(tmp_path / "results"), "proto")
    save_manifest(store, Manifest("proto", edited))
    with pytest.raises(ConfigError, match=r"plugin module 'plug\.py' was edited since this storage was started"):
        open_manifest(store, study, resume=True)
    many = copy.deepcopy(now)
    many.update({f"retired{i}": i for i in range(11)})  # 11 keys the study file no longer has
    store = ResultStore(str(tmp_path / "results2"), "proto")
    save_manifest(store, Manifest("proto", many))
    with pytest.raises(ConfigError, match=r": retired0, retired1, .*, retired7 and 3 more\. Resuming"):
        open_manifest(store, study, resume=True)


def test_the_manifest_keeps_its_recorded_key_for_the_steps_and_the_trials_their_recorded_phases():
    """The code says step and phase; every recorded manifest says ``stages`` and every row its phase string."""
    from supcon_ray.results.manifest import MANIFEST_STEPS_KEY, Manifest
    from supcon_ray.study import Phase, Step

    manifest = Manifest("proto", {}, steps={Step.TUNE_BASE: ["a"], Step.STUDY: ["b"]})
    record = json.loads(manifest.to_json())
    assert MANIFEST_STEPS_KEY == "stages" and list(record)[:3] == ["study", "fingerprint", "stages"]
    assert record["stages"] == {"tune_base": ["a"], "study": ["b"]} and "steps" not in record
    assert Manifest.from_json(manifest.to_json()).steps == {"tune_base": ["a"], "study": ["b"]}
    assert [str(p) for p in Phase] == ["tune_base", "nuisance", "study"]
    assert [str(s) for s in protocol.STEPS] == ["tune_base", "study", "replicates"]
