"""The GPU benchmarks' code paths, run on the CPU (no GPU is ever present in CI): the engine's own step
for both stems, one process and two (gloo standing in for NCCL), and the dataloader benchmark's rows."""

import json

from benchmarks import dataloader, gpu


def test_gpu_benchmark_drives_the_engine_step_on_one_and_two_processes(tmp_path, capsys):
    for gpus in ("1", "2"):
        out = tmp_path / f"gpu{gpus}.json"
        assert gpu.main(["--device", "cpu", "--model", "resnet-mini", "--batch", "4", "--steps", "1", "--repeats", "1",
                         "--warmup", "1", "--augment", "simaugment", "--amp", "off", "--losses", "supcon",
                         "--gpus", gpus, "--json", str(out)]) == 0
        rows = json.loads(out.read_text())["train_steps"]
        assert [(r["stem"], r["gpus"], r["views"]) for r in rows] == [("cifar", int(gpus), 2), ("imagenet", int(gpus), 2)]
        for r in rows:  # the reported rate is the median of the repeats' rates, each a positive finite rate
            assert len(r["rates"]) == 1 and r["views_per_s"] == r["rates"][0] and 0 < r["views_per_s"] < float("inf")
            assert (r["loss"], r["amp"], r["augment"]) == ("supcon", "fp32", "simaugment")  # --amp off: float32


def test_gpu_benchmark_without_a_gpu_says_so(capsys):
    assert gpu.main([]) == 0 and capsys.readouterr().out.strip() == "no GPU"


def test_dataloader_benchmark_rows_follow_the_schema(tmp_path):
    out = tmp_path / "dataloader.json"
    assert dataloader.main(["--sizes", "32", "--policies", "basic", "simaugment", "--repeats", "1", "--output", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "dataloader"
    keys = {"policy", "size", "path", "device", "threads", "batch", "decode", "views_per_second_per_core",
            "cores_per_gpu_at_2500"}
    assert [(r["policy"], r["path"]) for r in payload["rows"]] == [("basic", "per_image"), ("basic", "batched"),
                                                                   ("simaugment", "per_image"), ("simaugment", "batched")]
    for r in payload["rows"]:
        assert set(r) == keys and r["decode"] is False and r["device"] == "cpu"
        assert abs(r["cores_per_gpu_at_2500"] * r["views_per_second_per_core"] - 2500) < 1e-6
