"""The converged linear probe (``linear_stage: lbfgs``): the optimum of its objective, checked against
scikit-learn's independent solver; its penalty picked on validation with one tie rule; and in a run,
a probe that no longer depends on untuned SGD settings."""

import numpy as np
import pytest
import torch

from supcon_ray.engine.probe import PENALTIES, fit_logistic, fit_probe


def _blobs(n=300, d=8, k=3, seed=0, spread=1.5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * spread
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, d, generator=g)
    return x.float(), y


@pytest.mark.parametrize("penalty", [1e-1, 1e-3])
def test_the_solution_is_scikit_learns_logistic_regression(penalty):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs()
    w, b, _ = fit_logistic(x, y, 3, penalty)
    ref = LogisticRegression(C=1.0 / (len(y) * penalty), tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
    ours = torch.softmax(x.double() @ w.T + b, 1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(x.numpy()), atol=2e-4)
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=2e-3 * max(1.0, np.abs(ref.coef_).max()))


def test_the_objective_is_at_its_minimum():
    x, y = _blobs(seed=1)
    w, b, loss = fit_logistic(x, y, 3, 1e-2)
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    obj = torch.nn.functional.cross_entropy(x.double() @ w.T + b, y) + 0.5e-2 * (w * w).sum()
    obj.backward()
    assert float(obj) == pytest.approx(loss, rel=1e-9)
    assert w.grad.abs().max() < 1e-6 and b.grad.abs().max() < 1e-6  # a stationary point of a convex objective


def test_the_penalty_is_the_best_on_validation_first_of_equals():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(n=240, d=20, spread=0.6, seed=2)
    train, val = (x[:120], y[:120]), (x[120:], y[120:])
    fit = fit_probe(train, val, 3)
    # validation top-1 per penalty from scikit-learn's solver, an independent computation
    brute = {p: float((LogisticRegression(C=1.0 / (120 * p), tol=1e-10, max_iter=5000).fit(
        train[0].numpy(), train[1].numpy()).predict(val[0].numpy()) == val[1].numpy()).mean()) for p in PENALTIES}
    assert fit.val_by_penalty == pytest.approx(brute, abs=1 / 120 + 1e-9)  # at most one borderline point apart
    assert len(set(brute.values())) > 1  # the penalty matters here, so picking the best is tested
    assert fit.val_top1 == max(fit.val_by_penalty.values())
    assert fit.penalty == next(p for p in PENALTIES if fit.val_by_penalty[p] == fit.val_top1)
    # validation points at class 0's centre: every penalty is right on all of them, so the strongest wins
    centre = x[y == 0].mean(0, keepdim=True).repeat(5, 1)
    tied = fit_probe(train, (centre, torch.zeros(5, dtype=torch.long)), 3)
    assert set(tied.val_by_penalty.values()) == {1.0} and tied.penalty == PENALTIES[0]


def test_a_contrastive_run_with_the_converged_probe_and_its_resume(tmp_path):
    """Two SupCon epochs on digits with normalised r: the converged probe reads the encoder well (the SGD
    probe at its default settings stays near 0.5 after three epochs: README). A run resumed after
    pre-training fits the same probe and reports only the probe."""
    from supcon_ray.config import TrainConfig
    from supcon_ray.engine.trainer import Session, train

    cfg = TrainConfig(loss="supcon", dataset="digits", model="resnet-mini", epochs=2, batch_size=128,
                      linear_stage="lbfgs", seed=0)
    states = []
    res = train(cfg, Session(lambda m, s: states.append(s), device=torch.device("cpu")))
    assert res["status"] == "completed" and [h["stage"] for h in res["history"]] == ["pretrain"] * 2 + ["linear"]
    assert res["test_top1"] > 0.6, res["test_top1"]  # chance is 0.1
    assert res["linear_train_loss"] == res["history"][-1]["train_loss"]
    reports = []
    resumed = train(cfg, Session(lambda m, s: reports.append(m), device=torch.device("cpu"), resume_state=states[1]))
    assert resumed["resumed_from"] == "pretrain:2" and [m["stage"] for m in reports] == ["linear"]
    assert resumed["weights_digest"] == res["weights_digest"] and resumed["test_top1"] == res["test_top1"]


def _sharded_worker(rank, init_file, out_dir):
    import torch.distributed as dist

    from supcon_ray.engine.evaluation import encode, gather
    from supcon_ray.engine.probe import fit_probe

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    encoder, train, val = _sharded_problem()
    autocast = torch.autocast("cpu", enabled=False)
    cpu = torch.device("cpu")
    shards = {k: encode(encoder, ds, rank, 2, cpu, autocast, torch.float32, 0, batch_size=64)
              for k, ds in (("train", train), ("val", val))}
    full = gather(shards["train"], len(train), 2)
    fit = fit_probe(shards["train"], shards["val"], 10, penalties=(1e-2, 1e-4), reduce=dist.all_reduce)
    torch.save({"full": full, "shard_rows": len(shards["train"][1]), "fit": (fit.weight, fit.bias, fit.val_by_penalty)},
               f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def _sharded_problem():
    """A fixed random encoder and 301 / 97 digits images (odd sizes: the two shards differ in length)."""
    from supcon_ray.data.datasets import load_dataset

    splits = load_dataset("digits")
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.Tanh())
    to_float = lambda ds: [(img.float() / 255, y) for img, y in (ds[i] for i in range(len(ds)))]  # noqa: E731
    return encoder, to_float(torch.utils.data.Subset(splits.train, range(301))), to_float(torch.utils.data.Subset(splits.val, range(97)))


def test_sharded_encoding_and_data_parallel_probe_match_one_process(tmp_path):
    """Two gloo ranks each encode half the images and fit the probe on their shards with summed objectives:
    the gathered features are the single-process features in dataset order, and both ranks end with the
    single-process classifier (a probe that ignored the other shard, or mis-ordered the gather, would not)."""
    import torch.multiprocessing as mp

    from supcon_ray.engine.evaluation import encode
    from supcon_ray.engine.probe import fit_probe

    mp.spawn(_sharded_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    encoder, train, val = _sharded_problem()
    autocast, cpu = torch.autocast("cpu", enabled=False), torch.device("cpu")
    features = encode(encoder, train, 0, 1, cpu, autocast, torch.float32, 0, batch_size=64)
    ref = fit_probe(features, encode(encoder, val, 0, 1, cpu, autocast, torch.float32, 0), 10, penalties=(1e-2, 1e-4))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["shard_rows"] for r in ranks] == [151, 150]
    for r in ranks:
        # rows in dataset order (a mis-ordered gather moves whole rows, far beyond 1e-6); the two encode in
        # different batch sizes, and a matrix kernel may round a row differently with the batch it is in
        assert torch.allclose(r["full"][0], features[0], rtol=0, atol=1e-6) and torch.equal(r["full"][1], features[1])
        w, b, scores = r["fit"]
        assert torch.allclose(w, ref.weight, atol=1e-5) and torch.allclose(b, ref.bias, atol=1e-5)
        assert scores == pytest.approx(ref.val_by_penalty, abs=1 / 97 + 1e-9)  # at most one borderline image apart
