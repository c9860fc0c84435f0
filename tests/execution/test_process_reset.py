"""A reused trial process is put back to a fresh process's state before each trial."""

import os

import torch

from supcon_ray.execution import runner
from supcon_ray.config import TrainConfig


def test_reset_undoes_what_a_trial_can_change(monkeypatch):
    monkeypatch.setattr(runner, "_trials_in_process", 0)
    monkeypatch.setattr(runner, "_first_environ", None)
    monkeypatch.delenv("SUPCON_TEST_LEAK", raising=False)
    monkeypatch.setenv("SUPCON_TEST_KEPT", "1")
    threads = torch.get_num_threads()
    cfg = TrainConfig(cpus_per_worker=1)
    try:
        assert runner.reset_process_state(cfg) == 0
        assert torch.get_num_threads() == 1
        # what the first trial leaves behind
        os.environ["SUPCON_TEST_LEAK"] = "x"
        os.environ["SUPCON_TEST_KEPT"] = "changed"
        os.environ["RAY_TEST_PER_TRIAL"] = "ray's own"
        torch.set_num_threads(2)
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = True
        assert runner.reset_process_state(cfg) == 1
        assert "SUPCON_TEST_LEAK" not in os.environ and os.environ["SUPCON_TEST_KEPT"] == "1"
        assert os.environ["RAY_TEST_PER_TRIAL"] == "ray's own"
        assert torch.get_num_threads() == 1 and torch.is_grad_enabled()
        assert torch.get_default_dtype() == torch.float32
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:
        os.environ.pop("RAY_TEST_PER_TRIAL", None)
        os.environ.pop("SUPCON_TEST_LEAK", None)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False
