"""Sweeps researchers already ran: a table of runs from Ray Tune, Optuna, MLflow or a spreadsheet reported as a
study folder is (``supcon_ray.analyze``, ``supcon-ray report --table``). The recipes are docs/usage.md's own code
blocks, run here against each library's real export of a sweep with a known answer."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import supcon_ray
from supcon_ray.report import main as report

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"
LRS = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
SEEDS = [0, 1]
#: how much each method's accuracy falls per squared decade away from lr 1: "steady" is the less sensitive
SLOPE = {"steady": 0.01, "touchy": 0.1}


def accuracy(method: str, lr: float, seed: int) -> float:
    """The sweep's objective: a parabola in log10(lr), with a little seed noise (the Ray Tune test's trainable
    computes the same, in its own body)."""
    noise = np.random.default_rng([seed, int(round(math.log10(lr) + 10)), len(method)]).normal(0, 0.003)
    return 0.9 - SLOPE[method] * math.log10(lr) ** 2 / 4 + float(noise)


def recipe(name: str) -> str:
    """The docs' code block that starts with ``# recipe: <name>``."""
    blocks = re.findall(r"```python\n(.*?)```", USAGE.read_text(), re.S)
    found = [b for b in blocks if b.startswith(f"# recipe: {name}")]
    assert len(found) == 1, f"docs/usage.md has no recipe for {name}"
    return found[0]


def run_recipe(name: str, **scope) -> dict:
    namespace = {"supcon_ray": supcon_ray, **scope}
    exec(recipe(name), namespace)  # noqa: S102 - the documentation's own lines
    return namespace["numbers"]


def assert_known_answer(numbers: dict) -> None:
    """Both methods over 6 learning rates: steady is less sensitive, for these settings, per factor and pooled."""
    (factor,) = numbers["factors"]
    assert factor["factor"] == "lr" and factor["n_settings"] == len(LRS)
    assert {factor["baseline"], factor["method"]} == {"steady", "touchy"}
    assert factor["these_settings"]["claim"] == numbers["overall"]["these_settings"]["claim"] == "steady_less_sensitive"
    ratio = factor["these_settings"]["ratio"]  # steady / touchy (the baseline is the first in alphabetical order)
    assert ratio == pytest.approx(SLOPE["steady"] / SLOPE["touchy"], rel=0.3)


@pytest.mark.ray
def test_a_ray_tune_sweep_goes_through_its_own_export(ray_session, tmp_path):
    from ray import tune

    slope = dict(SLOPE)

    def trainable(config):  # self-contained: Ray's workers cannot import this test module
        import math

        import numpy as np

        noise = np.random.default_rng([config["seed"], int(round(math.log10(config["lr"]) + 10)),
                                       len(config["method"])]).normal(0, 0.003)
        tune.report({"acc": 0.9 - slope[config["method"]] * math.log10(config["lr"]) ** 2 / 4 + float(noise)})

    tuner = tune.Tuner(trainable, param_space={"method": tune.grid_search(sorted(SLOPE)), "lr": tune.grid_search(LRS),
                                               "seed": tune.grid_search(SEEDS)},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="lr-sweep", verbose=0))
    results = tuner.fit()
    assert len(results) == 2 * len(LRS) * len(SEEDS) and not results.errors
    assert_known_answer(run_recipe("ray tune", results=results))


def test_an_optuna_study_goes_through_its_own_export():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        method = trial.suggest_categorical("method", sorted(SLOPE))
        lr = trial.suggest_categorical("lr", LRS)
        return accuracy(method, lr, trial.user_attrs["seed"])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for method in sorted(SLOPE):  # the grid on every seed, each run's seed a user attribute
        for lr in LRS:
            for seed in SEEDS:
                study.enqueue_trial({"method": method, "lr": lr}, user_attrs={"seed": seed})
    study.optimize(objective, n_trials=len(SLOPE) * len(LRS) * len(SEEDS))
    # one more: a trial that failed, as sweeps have (it must not count)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              params={"method": "touchy", "lr": 0.1},
                                              distributions={"method": optuna.distributions.CategoricalDistribution(sorted(SLOPE)),
                                                             "lr": optuna.distributions.CategoricalDistribution(LRS)},
                                              user_attrs={"seed": 7}))
    df = study.trials_dataframe()
    assert {"params_method", "params_lr", "user_attrs_seed", "value", "state"} <= set(df.columns)
    done = df[df["state"] == "COMPLETE"]
    assert len(done) == 2 * len(LRS) * len(SEEDS)
    assert not done.duplicated(["params_method", "params_lr", "user_attrs_seed"]).any()
    numbers = run_recipe("optuna", study=study)
    assert_known_answer(numbers)
    assert numbers["divergence_all_trials"]  # the failed trial was read as failed, not scored


def test_mlflow_runs_go_through_their_own_export(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the test install has MLflow: pip install -e '.[test]'")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("lr-sweep")
    for method in sorted(SLOPE):
        for lr in LRS:
            for seed in SEEDS:
                with mlflow.start_run():
                    mlflow.log_params({"method": method, "lr": lr, "seed": seed})
                    mlflow.log_metric("acc", accuracy(method, lr, seed))
    assert_known_answer(run_recipe("mlflow", mlflow=mlflow))


def _sweep() -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "knob": "lr", "lr": lr, "seed": s, "acc": accuracy(m, lr, s)}
                         for m in sorted(SLOPE) for lr in LRS for s in SEEDS])


def test_report_table_writes_what_analyze_returns(tmp_path, capsys):
    table = tmp_path / "runs.parquet"
    _sweep().to_parquet(table)
    out = tmp_path / "out"
    args = ["--table", str(table), "--metric", "acc", "--columns", "loss=method,factor=knob,setting=lr",
            "-o", str(out / "page.html"), "--json", str(out / "numbers.json"), "--markdown", "-"]
    assert report(args) == 0
    printed = capsys.readouterr().out
    assert "steady less sensitive" in printed and "| lr | 6 |" in printed
    page = (out / "page.html").read_text()
    assert "A table of runs (no dataset or model recorded)" in page and "Stability report: study" in page
    numbers = json.loads((out / "numbers.json").read_text())
    expected = supcon_ray.analyze(_sweep(), metric="acc", columns={"loss": "method", "factor": "knob", "setting": "lr"})
    assert json.dumps(numbers, sort_keys=True) == json.dumps(json.loads(json.dumps(expected, default=str)), sort_keys=True)
    assert_known_answer(numbers)


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.drop(columns=["seed"]), "column 'seed' is missing (map it with --columns NAME=COLUMN"),
    (lambda d: d.assign(acc=d["acc"].astype(object).where(d.index != 3, "high")), "column 'acc': row 3 holds 'high', not a number"),
    (lambda d: d.assign(seed=d["seed"].astype(object).where(d.index != 5, "one")), "column 'seed': row 5 holds 'one', not a number"),
    (lambda d: d.assign(status=["completed"] * (len(d) - 1) + ["crashed"]), "column 'status': row 23 holds 'crashed'; must be one of: completed, diverged, failed"),
    (lambda d: pd.concat([d, d.iloc[[4]]], ignore_index=True), "rows 4, 24 are the same run (loss 'steady', factor 'lr', setting '0.1', seed 0)"),
])
def test_a_bad_table_exits_2_naming_the_column_or_rows_and_writes_nothing(tmp_path, capsys, edit, needle):
    table = tmp_path / "runs.csv"
    edit(_sweep()).to_csv(table, index=False)
    page = tmp_path / "report.html"
    code = report(["--table", str(table), "--metric", "acc", "--columns", "loss=method,factor=knob,setting=lr",
                   "-o", str(page), "--json", str(tmp_path / "n.json")])
    assert code == 2 and needle in capsys.readouterr().err
    assert not page.exists() and not (tmp_path / "n.json").exists()


def test_table_arguments_are_checked(tmp_path, capsys):
    assert report(["--table", str(tmp_path / "absent.csv")]) == 2
    assert "--table: no such file" in capsys.readouterr().err
    (tmp_path / "runs.txt").write_text("a,b\n")
    assert report(["--table", str(tmp_path / "runs.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    assert report(["--table", str(tmp_path / "runs.txt"), str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert report([str(tmp_path), "--columns", "loss=method"]) == 2
    assert "--columns: only with --table" in capsys.readouterr().err
    _sweep().to_csv(tmp_path / "runs.csv", index=False)
    assert report(["--table", str(tmp_path / "runs.csv"), "--metric", "acc", "--columns", "loss"]) == 2
    assert "--columns: 'loss' is not NAME=COLUMN" in capsys.readouterr().err
    assert report(["--table", str(tmp_path / "runs.csv"), "--metric", "acc", "--columns", "loss=methd"]) == 2
    assert "columns: loss=methd: the table has no column 'methd'; it has: method, knob, lr, seed, acc" in capsys.readouterr().err
