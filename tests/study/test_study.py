"""Study files: validation errors name the file, the key path and what is allowed; plans are right."""

import textwrap
from pathlib import Path

import pytest

from supcon_ray.config import ConfigError
from supcon_ray.study import load_study, plan_trials, sample_design
from supcon_ray.tune import main, print_plan

SPACES = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
GOOD = """
study: tiny
dataset: digits
model: resnet-mini
losses: [supcon, ce]
seeds: [0]
base:
  common: {epochs: 1, batch_size: 128}
  supcon: {lr: 0.1, linear_epochs: 2}
  ce: {lr: 0.1}
vary:
  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]
"""


def write(tmp_path, text, name="study.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_study_files_validate_both_ways():
    assert {p.stem for p in SPACES} >= {"optimizers", "augmentations", "learning_rates", "temperature", "batch_size"}
    for path in SPACES:
        full = load_study(path)
        assert plan_trials(full), path
        if full.quick is None:  # a published CPU study (fig4a_digits, fig4a_cifar10_subset): run as it is
            assert full.resources.gpus_per_worker == 0 and full.model in ("resnet-mini", "resnet-micro"), path
            continue
        quick = load_study(path, quick=True)
        assert plan_trials(quick), path
        assert quick.dataset == "digits" and quick.resources.gpus_per_worker == 0


def test_plan_counts_and_pairing(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    specs = plan_trials(study)
    assert len(specs) == 2 * 2 * 1
    assert len({s.trial_id for s in specs}) == len(specs)
    rms = [s for s in specs if s.setting == "optimizer=rmsprop,lr=0.01"]
    assert {s.loss for s in rms} == {"supcon", "ce"} and all(s.train["lr"] == 0.01 for s in rms)
    base = [s for s in specs if s.setting == "optimizer=sgd"]
    assert {s.loss: s.train["lr"] for s in base} == {"supcon": 0.1, "ce": 0.1}


def test_temperature_factor_skips_ce(tmp_path):
    text = GOOD.replace("optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]", "temperature: [0.05, 0.5]")
    specs = plan_trials(load_study(write(tmp_path, text)))
    assert {s.loss for s in specs} == {"supcon"} and len(specs) == 2


@pytest.mark.parametrize("sampler,n", [("random", 5), ("qmc", 4)])
def test_sampled_designs_are_paired_and_reproducible(tmp_path, sampler, n):
    text = GOOD.replace("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]",
                        f"search:\n  sampler: {sampler}\n  num_samples: {n}\n  seed: 3\n"
                        "  space: {lr: {loguniform: [0.01, 1.0]}, temperature: {uniform: [0.05, 0.5]}}")
    study = load_study(write(tmp_path, text))
    specs = plan_trials(study)
    assert len(specs) == n * 2
    by_loss = {loss: [s.setting for s in specs if s.loss == loss] for loss in ("supcon", "ce")}
    assert by_loss["supcon"] == by_loss["ce"]  # same configurations for both losses
    assert sample_design(study.search) == sample_design(study.search)
    assert all(0.01 <= s.train["lr"] <= 1.0 for s in specs)


def test_grid_design_size(tmp_path):
    text = GOOD.replace("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]",
                        "search:\n  sampler: grid\n  space: {lr: {choice: [0.1, 0.5]}, augment: {choice: [basic, simaugment]}}")
    specs = plan_trials(load_study(write(tmp_path, text)))
    assert len(specs) == 4 * 2 and len({s.setting for s in specs}) == 4


def test_grid_generators_write_many_settings_in_one_line(tmp_path):
    text = ("study: tiny\nlosses: [supcon, ce]\nseeds: [0]\nvary:\n  lr: {x_logspace: [1/30, 30, 9]}\n"
            "  temperature: {linspace: [0.05, 0.5, 10]}\n  batch_size: {logspace: [32, 512, 5]}\n")
    study = load_study(write(tmp_path, text))
    assert study.vary["lr"] == ["x0.03333", "x0.07801", "x0.1826", "x0.4273", "x1", "x2.34", "x5.477", "x12.82", "x30"]
    assert study.vary["temperature"] == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    assert study.vary["batch_size"] == [32, 64, 128, 256, 512] and all(type(b) is int for b in study.vary["batch_size"])
    specs = plan_trials(study)
    assert len({s.setting for s in specs if s.factor == "lr"}) == 9


BAD = [
    ("vary:\n  optimizer: [sgd, lars, {optimizer: rmsprop, lr: -0.01}]", "vary.optimizer[2].lr: Input should be greater than 0"),
    ("vary:\n  optimizer: [sgd, adam]", "vary.optimizer[1].optimizer: unknown optimizer 'adam'; must be one of: sgd, lars, rmsprop, adamw"),
    ("vary:\n  augment: [simaugment, mixup]", "unknown augmentation 'mixup'; must be one of: none, basic, simaugment"),
    ("vary:\n  optimizer: []", "vary: factor 'optimizer' is empty"),
    # grid generators
    ("vary:\n  lr: {x_logspace: [0, 30, 9]}", "vary: lr: x_logspace: start must be > 0"),
    ("vary:\n  lr: {logspace: [1, 10]}", "vary: lr: logspace takes [start, stop, count]"),
    ("vary:\n  lr: {linspace: [1, 0.1, 5]}", "vary: lr: linspace: start must be below stop"),
    ("vary:\n  lr: {linspace: [0.1, 1, 1]}", "vary: lr: linspace: count must be 2 to 1000"),
    ("vary:\n  batch_size: {linspace: [32, 33, 5]}", "vary: batch_size: linspace: 5 points from 32 to 33 repeat once rounded"),
    ("vary:\n  optimizer: {linspace: [1, 2, 3]}", "vary: optimizer: linspace: 'optimizer' is not a numeric hyperparameter"),
    ("vary:\n  lr: {linspace: [0.1, 1, 3], logspace: [0.1, 1, 3]}", "vary: lr: a grid is one of"),
    ("vary:\n  optimizer: [sgd]\nbogus: 1", "bogus: unknown key"),
    ("vary:\n  optimizer: [sgd]\nseeds: [0, -1]", "seeds: seeds must be >= 0"),
    ("vary:\n  optimizer: [sgd]\nseeds: zero", "seeds: Input should be a valid list"),
    ("vary:\n  optimizer: [sgd]\ndataset: mnist", "unknown dataset 'mnist'; must be one of: digits, cifar10"),
    ("vary:\n  optimizer: [sgd]\nbase: {common: {epochs: -3}}", "base.common.epochs: Input should be greater than or equal to 1"),
    ("vary:\n  optimizer: [sgd]\nbase: {ce: {lr: fast}}", "base.ce.lr: Input should be a valid number"),
    ("vary:\n  optimizer: [sgd]\nbase: {common: {colour: red}}", "base.common.colour: unknown key"),
    ("vary:\n  optimizer: [sgd]\nresources: {workers_per_trial: 0}", "resources.workers_per_trial: Input should be greater than or equal to 1"),
    ("vary:\n  optimizer: [sgd]\nlosses: [supcon, triplet]", "losses[1]: unknown loss 'triplet'; must be one of: supcon, simclr, ce"),
    ("search: {sampler: annealing, num_samples: 2, space: {lr: {uniform: [0.1, 1]}}}", "search.sampler: Input should be 'grid', 'random', 'qmc' or 'tpe'"),
    ("search: {sampler: random, num_samples: 2, space: {lr: {loguniform: [0, 1]}}}", "loguniform needs low > 0"),
    ("search: {sampler: random, num_samples: 2, space: {speed: {uniform: [0, 1]}}}", "unknown hyperparameter 'speed'"),
    ("search: {sampler: random, num_samples: 2, space: {lr: {uniform: [-1, 1]}}}",
     "search.space.lr: Input should be greater than 0"),
    ("search: {sampler: random, num_samples: 2, space: {optimizer: {choice: [sgd, adam]}}}",
     "search.space.optimizer: unknown optimizer 'adam'"),
    ("search: {sampler: random, num_samples: 2, space: {epochs: {int: [0, 3]}}}",
     "search.space.epochs: Input should be greater than or equal to 1"),
    ("search: {sampler: random, num_samples: 2, space: {seed: {int: [0, 3]}}}", "search.space.seed: 'seed' cannot be tuned"),
    # the two-stage protocol (tune_base, nuisance)
    ("vary:\n  lr: [0.1, 0.5]\ntune_base: {budget: 4, space: {lr: {loguniform: [0.01, 1]}}}",
     "tune_base.space.lr: 'lr' is tuned in step 1 and also varied by factor 'lr' (vary.lr[0] sets lr=0.1)"),
    ("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]\ntune_base: {budget: 4, space: {lr: {loguniform: [0.01, 1]}}}",
     "tune_base.space.lr: 'lr' is tuned in step 1 and also varied by factor 'optimizer'"),
    ("vary:\n  optimizer: [sgd]\ntune_base: {budget: 0, space: {lr: {loguniform: [0.01, 1]}}}",
     "tune_base.budget: Input should be greater than or equal to 1"),
    ("vary:\n  optimizer: [sgd]\ntune_base: {budget: 2, select: test_top1, space: {lr: {loguniform: [0.01, 1]}}}",
     "tune_base.select: 'test_top1' is a test metric"),
    ("vary:\n  optimizer: [sgd]\ntune_base: {budget: 2, select: val_loss, space: {lr: {loguniform: [0.01, 1]}}}",
     "tune_base.select: unknown metric 'val_loss'; valid: val_top1"),
    ("vary:\n  optimizer: [sgd]\ntune_base: {budget: 2, space: {seed: {int: [0, 9]}}}",
     "tune_base.space.seed: 'seed' cannot be tuned"),
    ("vary:\n  optimizer: [sgd]\ntune_base: {budget: 2, space: {speed: {uniform: [0, 1]}}}",
     "tune_base.space.speed: unknown hyperparameter"),
    ("vary:\n  optimizer: [sgd]\ntune_base: {budget: 2, space: {lr: {choice: [0.1, -1.0]}}}",
     "tune_base.space.lr: Input should be greater than 0"),
    ("vary:\n  optimizer: [sgd]\nnuisance:\n  optimizer: {budget: 2, space: {speed: {uniform: [0, 1]}}}",
     "nuisance.optimizer.space.speed: unknown hyperparameter; valid: loss, dataset"),
    ("vary:\n  optimizer: [sgd]\nnuisance:\n  optimizer: {budget: 0, space: {lr: {uniform: [0.1, 1]}}}",
     "nuisance.optimizer.budget: Input should be greater than or equal to 1"),
    ("vary:\n  optimizer: [sgd]\nnuisance:\n  optimizer: {space: {lr: {uniform: [0.1, 1]}}}",
     "nuisance.optimizer.budget: required for the random sampler"),
    ("vary:\n  optimizer: [sgd]\nnuisance:\n  optimizer: {budget: 2, select: test_top1, space: {lr: {uniform: [0.1, 1]}}}",
     "nuisance.optimizer.select: 'test_top1' is a test metric"),
    ("vary:\n  optimizer: [sgd]\nnuisance:\n  augment: {budget: 2, space: {lr: {uniform: [0.1, 1]}}}",
     "nuisance.augment: 'augment' is not a factor under 'vary'; factors: optimizer"),
    ("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]\nnuisance:\n  optimizer: {budget: 2, space: {lr: {uniform: [0.1, 1]}}}",
     "nuisance.optimizer.space.lr: 'lr' is set by the factor's own settings (vary.optimizer[1] sets lr=0.01)"),
    ("vary:\n  optimizer: [sgd]\nnuisance:\n  optimizer: {sampler: grid, budget: 3, space: {lr: {choice: [0.1, 1]}}}",
     "nuisance.optimizer.budget: the grid has 2 points"),
    ("vary:\n  lr: [x0.5, xfast]", "vary.lr[1].lr: 'xfast' is neither a number nor a multiple of the base"),
    ("vary:\n  lr: [x0]", "vary.lr[0].lr: Input should be greater than 0"),
]


@pytest.mark.parametrize("extra,needle", BAD)
def test_bad_study_exits_2_naming_key(tmp_path, capsys, extra, needle):
    head = "study: tiny\nlosses: [supcon, ce]\nseeds: [0]\n"
    path = write(tmp_path, head + extra + "\n")
    assert main(["--space", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and needle in err, err


@pytest.mark.parametrize("text,needle", [
    ("study: [unclosed", "not valid YAML"),
    ("- just\n- a list", "a study file is a mapping"),
    ("study: x\nlosses: [ce]\nseeds: [0]\nvary: {lr: [0.1]}\n", "--quick needs a 'quick' block"),
    ("study: x\nlosses: [ce]\nseeds: [0]\nvary: {lr: [0.1]}\nquick: {epochz: 1}\n", "quick.epochz: unknown key"),
])
def test_bad_files(tmp_path, capsys, text, needle):
    assert main(["--space", str(write(tmp_path, text)), "--dry-run", "--quick"]) == 2
    assert needle in capsys.readouterr().err


def test_missing_file(capsys):
    assert main(["--space", "nope/missing.yaml", "--dry-run"]) == 2
    assert "no such study file" in capsys.readouterr().err


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "study: !!python/object/apply:os.system ['echo hacked']\nlosses: [ce]\nseeds: [0]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(path)


def test_dry_run_prints_both_stages(capsys):
    assert main(["--space", str(SPACES[[p.stem for p in SPACES].index("optimizers")]), "--quick", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "step 1 (tune_base): sampler=qmc" in out
    assert "space: lr\n" in out  # the quick block's space replaces the body's (lr, weight_decay) whole
    assert "SupCon  4 configurations x 1 seed(s) = 4 trials" in out and "CE      4 configurations x 1 seed(s) = 4 trials" in out
    # the nuisance search runs on the selection seed, its picks on the study seeds
    assert "step 2: 18 planned trials (0 ordinary, 18 in nuisance searches)" in out  # 3 optimizers x 3 lr x 2 losses
    assert "step 3 (replicates): 12 trials, each nuisance pick on the study seeds [0, 1]" in out
    assert "optimizer=rmsprop [lr=10]" in out and "total: 38 trials" in out


def test_gpu_bodies_set_their_loader_and_checkpoints_and_dry_run_prints_them(capsys):
    """Every GPU body sets loader workers for its CPUs and a checkpoint interval; a quick block on a CPU
    sets neither to the GPU's values (its base merges over the body's)."""
    for path in SPACES:
        full = load_study(path)
        if full.resources.gpus_per_worker == 0:
            continue
        assert 0 < full.base.common["num_workers"] < full.resources.cpus_per_worker, path
        assert full.base.common["checkpoint_every"] > 1, path
        from supcon_ray.data.names import absolute_dataset_name, missing_files

        if missing_files(absolute_dataset_name(full.dataset, full.folder)):  # ImageNet's folder is not on this machine
            assert main(["--space", str(path), "--dry-run"]) == 2
            assert "dataset: 'imagefolder:/mnt/imagenet'" in capsys.readouterr().err
            full = full.model_copy(update={"dataset": "digits"})
            print_plan(full)
        else:
            assert main(["--space", str(path), "--dry-run"]) == 0
        out = capsys.readouterr().out
        line = f"num_workers={full.base.common['num_workers']} (set, per worker on cuda), augmentation batched, " \
               f"checkpoint every {full.base.common['checkpoint_every']} epoch(s)"
        assert out.count(line) == len(full.losses), (path, out[:600])
        quick = load_study(path, quick=True)
        # the quick block sets its own (CPU) values over the body's: no loader workers, and a checkpoint within
        # its short run (every epoch, or once at its end), never the GPU body's interval
        every = quick.base.common["checkpoint_every"]
        assert quick.base.common["num_workers"] == 0 and every != full.base.common["checkpoint_every"], path
        assert every == 1 or every == quick.base.common["epochs"], path


def test_execution_settings_change_neither_trial_ids_nor_the_fingerprint(tmp_path):
    """Loader workers and the checkpoint interval do not change what a trial computes (draws are seeded per
    sample): editing them keeps every trial id, so a resumed study neither reruns nor refuses."""
    from supcon_ray.results.manifest import changed_keys, fingerprint

    one = load_study(write(tmp_path, GOOD, "a.yaml"))
    two = load_study(write(tmp_path, GOOD.replace("{epochs: 1, batch_size: 128}",
                                                  "{epochs: 1, batch_size: 128, num_workers: 3, checkpoint_every: 4}"), "b.yaml"))
    assert [s.trial_id for s in plan_trials(one)] == [s.trial_id for s in plan_trials(two)]
    assert changed_keys(fingerprint(one), fingerprint(two)) == []
    three = load_study(write(tmp_path, GOOD.replace("{epochs: 1, batch_size: 128}", "{epochs: 2, batch_size: 128}"), "c.yaml"))
    assert changed_keys(fingerprint(one), fingerprint(three)) == ["base.common.epochs"]
    assert set(s.trial_id for s in plan_trials(one)).isdisjoint(s.trial_id for s in plan_trials(three))


def test_dry_run_counts_nuisance_searches(tmp_path, capsys):
    text = GOOD.replace("optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]", "optimizer: [sgd, lars, rmsprop]") + (
        "nuisance:\n  optimizer: {sampler: grid, space: {lr: {choice: [0.01, 0.1, 1.0]}}}\n"
        "tune_base: {sampler: tpe, budget: 5, seeds: [1000, 1001], space: {weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}}\n")
    assert main(["--space", str(write(tmp_path, text)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "step 1 total: 20 trials" in out
    assert "step 2: 18 planned trials (0 ordinary, 18 in nuisance searches)" in out  # 3 settings x 3 lr x 2 losses
    assert "nuisance optimizer/ce: lr re-tuned per setting: 3 configurations x selection seeds [1000]" in out
    assert "step 3 (replicates): 6 trials" in out  # 3 settings x 2 losses x 1 study seed
    assert "total: 44 trials" in out


def test_dataset_files_missing_on_this_machine_exit_2_before_ray_starts(tmp_path, capsys):
    """A ``parquet:`` or ``imagefolder:`` path that does not exist, or holds no images, is refused with
    exit status 2 naming ``dataset`` in --dry-run too (before: --dry-run passed, then every trial failed)."""
    head = "study: d\nlosses: [ce]\nseeds: [0]\nvary: {optimizer: [sgd]}\n"
    cases = [("parquet:absent", "absent does not exist"),
             ("imagefolder:empty", "empty/train has no class folders")]
    cases.append(("parquet:partial", "partial/train.parquet does not exist"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "folder" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "folder" / "test" / "cat").mkdir(parents=True)
    (tmp_path / "folder" / "train" / "cat" / "a.png").write_bytes(b"")
    cases.append(("imagefolder:folder", "folder/test holds no images"))
    for dataset, needle in cases:
        path = tmp_path / "s.yaml"
        path.write_text(head + f"dataset: '{dataset}'\n")
        assert main(["--space", str(path), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert f"dataset: '{dataset}'" in err and needle in err, err
    (tmp_path / "folder" / "test" / "cat" / "b.png").write_bytes(b"")
    path.write_text(head + "dataset: 'imagefolder:folder'\n")
    assert main(["--space", str(path), "--dry-run"]) == 0


def test_an_unreadable_parquet_file_names_its_path(tmp_path):
    from supcon_ray.data.datasets import DataError, ParquetImages

    (tmp_path / "train.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=f"{tmp_path}/train.parquet cannot be read"):
        ParquetImages(tmp_path / "train.parquet")


def test_the_published_studies_replan_to_their_recorded_trial_ids():
    """Every committed folder re-plans, stage by stage from its recorded decisions, to exactly the trial
    ids and analysed entries in its manifest: new study keys and config fields left at their defaults
    (primary, equivalence_ratio, the registries, the own-size rule) change no id, so the folder resumes."""
    import json

    import yaml

    from supcon_ray.plugins import load_plugins
    from supcon_ray.results.manifest import read_manifest
    from supcon_ray.study.protocol import STEPS, plan
    from supcon_ray.study import Study, at_own_size

    root = Path(__file__).resolve().parents[2] / "docs" / "results"
    folders = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    assert folders, "no published study folders"
    for folder in folders:
        manifest = read_manifest(str(folder))
        data = yaml.safe_load((folder / "study.yaml").read_text())
        if data.get("plugins"):  # paths as written in the study file, which lives in search_spaces/
            load_plugins(data["plugins"], str(root.parents[1] / "search_spaces"))
        study = Study.model_validate(data)
        assert at_own_size(study)[0] == study  # sizes come from train_size / the built-in datasets
        analysed = []
        for step in STEPS:
            planned = plan(study, step, manifest.decisions)
            assert [s.trial_id for s in planned.specs] == manifest.steps[step][:len(planned.specs)], (folder, step)
            analysed += planned.analysed
        assert json.dumps(analysed, sort_keys=True) == json.dumps(manifest.analysed, sort_keys=True), folder


@pytest.mark.parametrize("edit, where, closest, also_valid", [
    ({"base": {"common": {"epoch": 5}}}, "base.common.epoch", "epochs", "linear_epochs"),
    ({"resources": {"max_concurent_trials": 2}}, "resources.max_concurent_trials", "max_concurrent_trials", "launcher"),
    ({"nuisance": {"optimizer": {"sampler": "grid", "space": {"lr": {"choice": [0.1, 1.0]}}, "budjet": 2}}},
     "nuisance.optimizer.budjet", "budget", "seeds"),
    ({"tune_base": {"space": {"lr": {"loguniform": [0.01, 1.0]}}, "budget": 2, "seeds": [9], "selct": "val_top1"}},
     "tune_base.selct", "select", "sampler"),
    ({"quick": {"seedz": [0]}}, "quick.seedz", "seeds", "losses"),
])
def test_an_unknown_key_names_the_closest_valid_one_and_every_valid_key_at_its_level(edit, where, closest, also_valid):
    """A newcomer's misspelt key (issue 42): the message names the key's path, the closest valid key at that
    level (difflib) and all of that level's valid keys, and loading exits as a ConfigError (status 2)."""
    from supcon_ray.study import study_from_dict

    raw = {"study": "s", "losses": ["supcon", "ce"], "seeds": [0, 1], "vary": {"optimizer": ["sgd", "lars"]}}
    raw.update(edit)
    with pytest.raises(ConfigError) as err:
        study_from_dict(raw)
    text = str(err.value)
    assert f"{where}: unknown key; did you mean {closest!r}? (valid here: " in text, text
    assert also_valid in text.split("valid here: ", 1)[1]


def test_an_unknown_key_with_nothing_close_still_lists_the_valid_keys():
    from supcon_ray.study import study_from_dict

    with pytest.raises(ConfigError) as err:
        study_from_dict({"study": "s", "losses": ["ce"], "seeds": [0], "resources": {"zzz": 1}})
    assert "resources.zzz: unknown key (valid here: workers_per_trial, " in str(err.value)
