"""Single-process training: accuracy on digits, determinism, exact resume, divergence, bad input."""

import json
import tempfile

import pytest
import torch

from supcon_ray.checkpoint import load_state, save_state
from supcon_ray.config import TrainConfig
from supcon_ray.data import load_dataset
from supcon_ray.engine import Session, train
from supcon_ray.train import main

FAST = dict(dataset="digits", model="resnet-mini", batch_size=128, augment="basic")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


class Interrupt(Exception):
    pass


def _run(cfg, splits, resume_state=None, stop_after=None):
    states, seen = [], []

    def reporter(metrics, state):
        seen.append(metrics)
        states.append(state)
        if stop_after is not None and len(seen) == stop_after:
            raise Interrupt

    result = train(cfg, Session(reporter, resume_state=resume_state), splits)
    return result, states, seen


@pytest.mark.parametrize("loss,epochs,floor", [("supcon", 4, 0.6), ("ce", 4, 0.6)])
def test_digits_well_above_chance(loss, epochs, floor, digits):
    cfg = TrainConfig(loss=loss, epochs=epochs, linear_epochs=10, lr=0.1, **FAST)
    result, _, history = _run(cfg, digits)
    assert result["status"] == "completed"
    assert result["test_top1"] > floor, result  # chance is 0.10
    assert [h["stage"] for h in history] == (["pretrain"] * 4 + ["linear"] * 10 if loss == "supcon" else ["ce"] * 4)
    assert all(h["val_top1"] is not None for h in history if h["stage"] != "pretrain")


def test_same_seed_same_result(digits):
    cfg = TrainConfig(loss="ce", epochs=1, **FAST)
    a, _, _ = _run(cfg, digits)
    b, _, _ = _run(cfg, digits)
    assert a["test_top1"] == b["test_top1"] and a["train_loss"] == b["train_loss"]
    c, _, _ = _run(cfg.model_copy(update={"seed": 1}), digits)
    assert c["train_loss"] != a["train_loss"]


@pytest.mark.parametrize("loss,stop_after", [("ce", 1), ("supcon", 1), ("supcon", 2), ("supcon", 3)])
def test_resume_is_exact(loss, stop_after, digits):
    # supcon: 2 pretrain + 2 linear epochs; stop mid-pretrain, at the stage boundary, mid-linear
    cfg = TrainConfig(loss=loss, epochs=2, linear_epochs=2, **FAST)
    full, full_states, _ = _run(cfg, digits)
    partial_states = []

    def keep(metrics, state):
        partial_states.append(state)
        if len(partial_states) == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, Session(keep), digits)
    # the checkpoint goes through a real save/load round trip
    with tempfile.TemporaryDirectory() as d:
        save_state(partial_states[-1], d)
        resumed_state = load_state(d)
    resumed, res_states, _ = _run(cfg, digits, resume_state=resumed_state)
    assert resumed["test_top1"] == full["test_top1"]
    timing = ("images_per_second", "epoch_seconds")
    strip = lambda hist: [{k: v for k, v in h.items() if k not in timing} for h in hist]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    for k, v in full_states[-1]["network"].items():
        assert torch.equal(v, res_states[-1]["network"][k]), k


def test_absurd_lr_diverges_cleanly(digits, capsys):
    code = main(["--loss", "ce", "--epochs", "2", "--lr", "1e12", "--batch-size", "128", "--augment", "basic",
                 "--json", "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "diverged" and out["diverged_epoch"] == 1
    assert out["test_top1"] == pytest.approx(0.1)  # recorded at chance level


def test_cli_json_and_output(tmp_path, capsys):
    code = main(["--loss", "simclr", "--epochs", "1", "--linear-epochs", "2", "--batch-size", "256", "--augment", "basic",
                 "--output", str(tmp_path), "--json", "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("loss", "test_top1", "val_top1", "train_loss", "epochs", "seconds", "status"):
        assert key in out
    assert out["loss"] == "simclr" and out["status"] == "completed"
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "result.json").is_file()


@pytest.mark.parametrize("argv,needle", [
    (["--dataset", "mnist"], "valid: digits, cifar10"),
    (["--model", "vgg"], "valid: resnet-mini"),
    (["--optimizer", "adam"], "valid: sgd, lars, rmsprop, adamw"),
    (["--augment", "mixup"], "valid: none, basic, simaugment"),
    (["--loss", "triplet"], "valid: supcon, simclr, ce"),
    (["--lr", "0"], "lr: Input should be greater than 0"),
    (["--batch-size", "-4"], "batch_size"),
    (["--temperature", "-1"], "temperature"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "cifar-10-batches-py"),
    (["--batch-size", "5000"], "larger than the pretrain training set"),
])
def test_bad_input_exits_2(argv, needle, capsys):
    assert main(argv + ["--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("error:")
