"""Single-process training: accuracy on digits, determinism, exact resume, divergence, bad input."""

import dataclasses
import json
import math
import tempfile

import pytest
import torch

from supcon_ray.engine.checkpoint import load_state, save_state
from supcon_ray.config import TrainConfig
from supcon_ray.data.datasets import load_dataset
from supcon_ray.engine.trainer import Session, Trainer, train
from supcon_ray.engine.loop import cached_batches
from supcon_ray.train import main

FAST = dict(dataset="digits", model="resnet-mini", batch_size=128, augment="basic")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny(digits):
    """64 training images: two steps of 32 per epoch (CPU bf16/fp16 autocast is slow without hardware support)."""
    from torch.utils.data import Subset

    return dataclasses.replace(digits, train=Subset(digits.train, range(64)), val=Subset(digits.val, range(32)),
                               test=Subset(digits.test, range(32)))


@pytest.fixture(scope="module")
def small():
    """448 digits (403 to train after validation: three full batches of 128 per epoch) and 128 test images:
    enough to resume at every stopping point, at a quarter of the full set's cost."""
    return load_dataset("digits", train_size=448, test_size=128)


@pytest.fixture(scope="module")
def uninterrupted():
    """Each resume configuration's uninterrupted run, computed once for all of its stopping points."""
    return {}


TINY = dict(dataset="digits", model="resnet-mini", batch_size=32, linear_batch_size=32, augment="basic")


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
    # the default linear stage is the converged probe: one history row
    assert [h["stage"] for h in history] == (["pretrain"] * 4 + ["linear"] if loss == "supcon" else ["ce"] * 4)
    assert all(h["val_top1"] is not None for h in history if h["stage"] != "pretrain")


def test_same_seed_same_result(digits):
    cfg = TrainConfig(loss="ce", epochs=1, **FAST)
    a, _, _ = _run(cfg, digits)
    b, _, _ = _run(cfg, digits)
    assert a["test_top1"] == b["test_top1"] and a["train_loss"] == b["train_loss"]
    c, _, _ = _run(cfg.model_copy(update={"seed": 1}), digits)
    assert c["train_loss"] != a["train_loss"]


@pytest.mark.parametrize("loss,stop_after,num_workers,path", [
    ("ce", 1, 0, "batched"), ("supcon", 1, 0, "batched"), ("supcon", 2, 0, "batched"), ("supcon", 3, 0, "batched"),
    ("ce", 1, 0, "per_image"), ("supcon", 1, 2, "per_image"), ("supcon", 3, 2, "per_image")])
def test_resume_is_exact(loss, stop_after, num_workers, path, small, uninterrupted):
    # supcon: 2 pretrain + 2 SGD linear epochs; stop mid-pretrain, at the stage boundary, mid-linear;
    # per image with 2 persistent DataLoader workers, whose draws must not depend on which epoch they started in
    cfg = TrainConfig(loss=loss, epochs=2, linear_epochs=2, num_workers=num_workers, augment_path=path,
                      linear_stage="cached", **FAST)
    key = (loss, num_workers, path)
    if key not in uninterrupted:
        uninterrupted[key] = _run(cfg, small)
    full, full_states, _ = uninterrupted[key]
    partial_states = []

    def keep(metrics, state):
        partial_states.append(state)
        if len(partial_states) == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, Session(keep), small)
    # the checkpoint goes through a real save/load round trip
    with tempfile.TemporaryDirectory() as d:
        save_state(partial_states[-1], d)
        resumed_state = load_state(d)
    resumed, res_states, res_seen = _run(cfg, small, resume_state=resumed_state)
    # it resumed (a run that ignored the checkpoint would retrain every epoch to the same numbers)
    assert resumed["resumed_from"] == f"{resumed_state['stage']}:{resumed_state['epoch']}" and full["resumed_from"] is None
    assert len(res_seen) == len(full_states) - stop_after  # only the epochs left were trained
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
    (["--dataset", "mnist"], "must be one of: digits, cifar10"),
    (["--model", "vgg"], "must be one of: resnet-mini"),
    (["--optimizer", "adam"], "must be one of: sgd, lars, rmsprop, adamw"),
    (["--augment", "mixup"], "must be one of: none, basic, simaugment"),
    (["--loss", "triplet"], "must be one of: supcon, simclr, ce"),
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


@pytest.mark.parametrize("loss", ["supcon", "ce"])
def test_bf16_autocast_epoch_on_cpu(loss, tiny):
    # CPU bf16 autocast takes the GPU AMP code path: the network runs in bf16, the loss in float32
    cfg = TrainConfig(loss=loss, epochs=1, linear_epochs=1, amp="bf16", **TINY)
    seen = []
    trainer = Trainer(cfg, Session(lambda m, s: seen.append(m)), tiny)
    dtypes = set()
    trainer.net.encoder.stem[0].register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype))
    result = trainer.run()
    assert result["status"] == "completed" and math.isfinite(result["train_loss"])
    assert torch.bfloat16 in dtypes
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())


def test_fp16_grad_scaler_state_is_checkpointed_and_restored(tiny):
    from torch.utils.data import Subset

    tiny = dataclasses.replace(tiny, train=Subset(tiny.train, range(32)))  # one step per epoch
    cfg = TrainConfig(loss="ce", epochs=2, amp="fp16", **TINY)
    _, states, _ = _run(cfg, tiny, stop_after=None)
    scale = states[0]["scaler"]["scale"]
    assert scale > 0 and math.isfinite(scale)
    # a resumed run continues from the saved scale (set to an unusual value here), not a fresh one
    tampered = dict(states[0], scaler=dict(states[0]["scaler"], scale=8.0))
    with tempfile.TemporaryDirectory() as d:
        save_state(tampered, d)
        resumed_state = load_state(d)
    _, res_states, _ = _run(cfg, tiny, resume_state=resumed_state)
    assert res_states[-1]["scaler"]["scale"] in (4.0, 8.0, 16.0)  # halved on overflow, else kept or grown
    assert states[-1]["scaler"]["scale"] not in (4.0, 8.0, 16.0)


@pytest.mark.parametrize("linear_stage", ["cached", "augmented"])
def test_linear_stage_trains_only_the_classifier(linear_stage, tiny):
    cfg = TrainConfig(loss="supcon", epochs=1, linear_epochs=2, linear_stage=linear_stage, **TINY)
    weights, history = [], []

    def reporter(metrics, state):  # state_dict() tensors share storage with the live network: copy
        history.append(metrics)
        weights.append({k: v.clone() for k, v in state["network"].items()})

    result = train(cfg, Session(reporter), tiny)
    assert result["status"] == "completed" and [h["stage"] for h in history] == ["pretrain", "linear", "linear"]
    after_pretrain, final = weights[0], weights[-1]
    for name, value in final.items():
        if name.startswith("classifier."):
            assert not torch.equal(value, after_pretrain[name]), name
        else:  # encoder weights and BatchNorm statistics, and the head, stay frozen
            assert torch.equal(value, after_pretrain[name]), name


def test_cached_batches_follow_the_distributed_sampler_order():
    from torch.utils.data import DistributedSampler

    features, labels = torch.randn(50, 3), torch.arange(50)
    batches = list(cached_batches((features, labels), 8, seed=3, epoch=2))
    sampler = DistributedSampler(range(50), num_replicas=1, rank=0, shuffle=True, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)[:48]
    assert [y.tolist() for _, y in batches] == [order[i:i + 8] for i in range(0, 48, 8)]
    assert all(torch.equal(x, features[y]) for x, y in batches)


def test_images_per_second_counts_views(tiny):
    cfg = TrainConfig(loss="supcon", epochs=1, linear_epochs=1, **TINY)
    _, _, history = _run(cfg, tiny)
    pre, lin = history
    assert pre["images_per_second"] * pre["epoch_seconds"] == pytest.approx(2 * 64)  # 2 steps x 32 samples x 2 views
    assert lin["images_per_second"] * lin["epoch_seconds"] == pytest.approx(64)


def test_amp_flag_and_legacy_boolean():
    from supcon_ray.engine.precision import amp_dtype
    from supcon_ray.train import parse_config

    assert TrainConfig().amp == "auto"
    assert amp_dtype("auto", torch.device("cpu")) is None and amp_dtype("off", torch.device("cpu")) is None
    assert amp_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert parse_config(["--amp", "fp16"])[0].amp == "fp16"
    assert parse_config(["--no-amp"])[0].amp == "off"
    assert TrainConfig(amp=False).amp == "off" and TrainConfig(amp=True).amp == "auto"  # older study files


@pytest.mark.parametrize("native, emulated, want", [(True, True, torch.bfloat16), (False, True, torch.float16),
                                                    (False, False, torch.float16)])
def test_amp_auto_picks_bf16_only_where_the_gpu_has_it_natively(monkeypatch, native, emulated, want):
    """V100 and T4 report bf16 as supported by emulation, which is slower than fp16 there."""
    from supcon_ray.engine.precision import amp_dtype

    def supported(including_emulation: bool = True) -> bool:
        return emulated if including_emulation else native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert amp_dtype("auto", torch.device("cuda")) == want


def test_trial_rows_record_the_linear_stage(tmp_path):
    from supcon_ray.results.storage import TRIAL_SCHEMA, ResultStore

    assert TRIAL_SCHEMA.field("linear_stage").type == "string"
    store = ResultStore(str(tmp_path), "s")
    row = {"study": "s", "trial_id": "t1", "loss": "supcon", "seed": 0, "factor": "f", "setting": "x",
           **TrainConfig(linear_stage="augmented").model_dump()}
    store.write_trial(row, [])
    assert store.read_trial("t1")["linear_stage"] == "augmented"


def test_a_killed_writers_partial_file_is_discarded_and_results_are_kept(tmp_path):
    from supcon_ray.results.storage import ResultStore

    store = ResultStore(str(tmp_path), "s")
    row = {"study": "s", "trial_id": "t1", "loss": "ce", "seed": 0, "factor": "f", "setting": "x",
           **TrainConfig().model_dump()}
    store.write_trial(row, [])
    partial = tmp_path / "s" / ".tmp" / "t2-0123.parquet"
    partial.write_bytes(b"PAR1 half a file")  # what a SIGKILL during a write leaves
    assert store.discard_partial_writes() == 1
    assert not partial.exists() and store.finished_ids() == {"t1"} and store.read_trial("t1")["setting"] == "x"
    assert store.discard_partial_writes() == 0


def test_cuda_determinism_settings(monkeypatch):
    # what a CUDA run sets up (the flags are process-wide, so they are restored afterwards)
    from supcon_ray.engine.precision import cuda_determinism

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        cuda_determinism(True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        cuda_determinism(False)
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def test_distributed_cli_runs_with_other_settings_never_share_checkpoints(monkeypatch, tmp_path):
    """The run name (its checkpoint folder) covers the whole configuration: before, a 2-worker run with other
    epochs or another linear stage resumed the earlier run's checkpoints and returned its result."""
    import supcon_ray.execution.distributed
    import supcon_ray.execution.ray_runtime
    from supcon_ray.train import run_ray

    names = []
    monkeypatch.setattr(supcon_ray.execution.ray_runtime, "init_ray", lambda address=None: None)
    monkeypatch.setattr(supcon_ray.execution.distributed, "fit_distributed", lambda cfg, name, storage, plugins=None, **kw: names.append(name) or {})
    base = TrainConfig(loss="supcon", dataset="digits", workers=2)
    for cfg in (base, base, base.model_copy(update={"epochs": 3}), base.model_copy(update={"linear_stage": "cached"})):
        run_ray(cfg, tmp_path, None)
    assert names[0] == names[1] and len(set(names)) == 3


def test_the_knn_monitor_scores_every_pretraining_epoch_and_changes_no_result(small):
    """``monitor: knn`` gives contrastive pre-training a validation score each epoch (the rung metric of a
    multi-fidelity search) without touching the run: same weights and accuracies as without it."""
    cfg = TrainConfig(loss="supcon", epochs=2, linear_epochs=1, lr=0.1, **FAST)
    plain = train(cfg, Session(lambda m, s: None), small)
    watched = train(cfg.model_copy(update={"monitor": "knn"}), Session(lambda m, s: None), small)
    assert watched["weights_digest"] == plain["weights_digest"]
    assert (watched["val_top1"], watched["test_top1"]) == (plain["val_top1"], plain["test_top1"])
    scores = [h["val_top1"] for h in watched["history"] if h["stage"] == "pretrain"]
    assert len(scores) == 2 and all(0.1 < s <= 1 for s in scores), scores  # well above chance on digits
    assert all(h["val_top1"] is None for h in plain["history"] if h["stage"] == "pretrain")


def test_knn_scores_vote_by_similarity_among_the_nearest():
    """Brute force on a toy bank: the k most cosine-similar items vote, each with exp(similarity / T)."""
    from supcon_ray.engine.monitor import knn_scores

    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.05], [0.2, 1.0]])
    scores = knn_scores(bank, labels, query, 3, k=3, temperature=0.5)
    import torch.nn.functional as F

    sims = F.normalize(query, dim=1) @ F.normalize(bank, dim=1).T
    for q in range(2):
        top = sims[q].argsort(descending=True)[:3]
        want = torch.zeros(3)
        for i in top:
            want[labels[i]] += torch.exp(sims[q, i] / 0.5)
        assert torch.allclose(scores[q], want, atol=1e-5)
    assert scores.argmax(1).tolist() == [0, 1]


def test_monitor_is_an_execution_setting_not_in_trial_ids():
    from supcon_ray.study.schema import EXECUTION_KEYS
    from supcon_ray.study.trials import trial_id

    train_a = TrainConfig(loss="supcon").model_dump()
    train_b = TrainConfig(loss="supcon", monitor="knn").model_dump()
    assert "monitor" in EXECUTION_KEYS
    assert trial_id("s", "study", "lr", "lr=0.1", train_a) == trial_id("s", "study", "lr", "lr=0.1", train_b)
