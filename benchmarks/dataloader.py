"""Augmentation throughput: views per second per CPU core, per image against batched, and the cores a GPU needs.

For every policy (``supcon_ray.data.augment.POLICIES`` but ``none``) at 32 px (CIFAR: 32 px sources) and
224 px (ImageNet: 256 px sources, the crop taken from them), it times

* ``per_image``: the torchvision pipeline (``build_transform``) on one uint8 image at a time, as a
  loader worker runs it, on one thread;
* ``batched`` on ``cpu``: ``BatchAugment`` on a batch, every sample its own draws, on one thread;
* ``batched`` on ``cuda`` (when a GPU is present): the same on the GPU, fed by one CPU core.

Decoding is excluded (``decode: false``): sources are uint8 tensors in memory. A row's
``views_per_second_per_core`` is views per second divided by the CPU cores used (one here; for a GPU
row, the core feeding it), and ``cores_per_gpu_at_2500`` is the cores that path needs to feed a GPU
consuming 2,500 views/s (a ResNet-50 at 224 px on an A100-class GPU, docs/performance.md's assumption).
Each figure is the median of ``--repeats`` timed blocks after one warm-up block.

Decoding is measured on its own (``decode_and_crop``): an ImageNet-sized JPEG (500 x 375, quality
90) decoded with PIL and random-resized-cropped to 224 for each of two views, what a loader worker
does per image on the batched path for ImageNet; its views per second per core bound that path's
loader, whatever the GPU does with the rest of the policy.

Writes ``benchmarks/out/dataloader.json``:
``{"benchmark", "machine", "rows": [{"policy", "size", "path", "device", "threads", "batch", "decode",
"views_per_second_per_core", "cores_per_gpu_at_2500"}]}``.

    python -m benchmarks.dataloader
    python -m benchmarks.dataloader --sizes 32 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from supcon_ray.data.augment import POLICIES, build_transform
from supcon_ray.data.batch_augment import BatchAugment

from .common import print_table, write_json

GPU_VIEWS_PER_SECOND = 2500
SOURCE = {32: 32, 224: 256}  # source side for each crop side
BATCH = {32: 256, 224: 64}  # images per timed block
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _sources(size: int, n: int) -> torch.Tensor:
    """``n`` structured uint8 RGB images (smooth colour fields plus noise: realistic work for every op)."""
    side = SOURCE[size]
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=side, mode="bilinear", align_corners=False)
    noise = torch.rand(n, 3, side, side, generator=g) * 0.25
    return ((smooth * 0.75 + noise) * 255).round().to(torch.uint8)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(policy: str, size: int, path: str, device: str, batch: int, views_per_second: float) -> dict:
    per_core = views_per_second  # one CPU core in every measurement
    return {"policy": policy, "size": size, "path": path, "device": device, "threads": 1, "batch": batch,
            "decode": False, "views_per_second_per_core": per_core,
            "cores_per_gpu_at_2500": GPU_VIEWS_PER_SECOND / per_core}


def decode_and_crop(repeats: int, n: int = 32) -> dict:
    """Views/s per core of PIL JPEG decoding (500 x 375) plus one 224 random resized crop per view, 2 views."""
    import io

    from PIL import Image
    from torchvision.transforms import v2
    from torchvision.transforms.v2.functional import pil_to_tensor

    g = torch.Generator().manual_seed(1)
    low = torch.nn.functional.interpolate(torch.rand(n, 3, 6, 8, generator=g), size=(375, 500), mode="bilinear")
    images = ((low * 0.75 + torch.rand(n, 3, 375, 500, generator=g) * 0.25) * 255).round().to(torch.uint8)
    blobs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    crop = v2.RandomResizedCrop(224, antialias=True)

    def run():
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as im:
                x = pil_to_tensor(im.convert("RGB"))
            crop(x), crop(x)

    seconds = _median_seconds(run, repeats)
    per_core = 2 * n / seconds
    return {"jpeg": [500, 375], "quality": 90, "views_per_image": 2, "views_per_second_per_core": per_core,
            "cores_per_gpu_at_2500": GPU_VIEWS_PER_SECOND / per_core}


def measure(policy: str, size: int, repeats: int, cuda: bool) -> list[dict]:
    n = BATCH[size]
    images = _sources(size, n)
    rows = []
    per_image = build_transform(policy, size, MEAN, STD, "cifar10" if size == 32 else "imagenet")
    seconds = _median_seconds(lambda: [per_image(im) for im in images], repeats)
    rows.append(_row(policy, size, "per_image", "cpu", 1, n / seconds))
    batched = BatchAugment(policy, size, MEAN, STD, "cifar10" if size == 32 else "imagenet")
    gen = torch.Generator()
    seconds = _median_seconds(lambda: batched(images, gen), repeats)
    rows.append(_row(policy, size, "batched", "cpu", n, n / seconds))
    if cuda:
        on_gpu = images.cuda()
        gen = torch.Generator(device="cuda")

        def step():
            batched(on_gpu, gen)
            torch.cuda.synchronize()

        seconds = _median_seconds(step, repeats)
        rows.append(_row(policy, size, "batched", "cuda", n, n / seconds))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224], choices=sorted(SOURCE))
    parser.add_argument("--policies", nargs="+", default=[p for p in POLICIES if p != "none"],
                        choices=[p for p in POLICIES if p != "none"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/out/dataloader.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    rows = [r for size in args.sizes for policy in args.policies for r in measure(policy, size, args.repeats, cuda)]
    print_table(["policy", "size", "path", "device", "batch", "views/s/core", "cores/GPU @2500"],
                [[r["policy"], r["size"], r["path"], r["device"], r["batch"], round(r["views_per_second_per_core"]),
                  round(r["cores_per_gpu_at_2500"], 2)] for r in rows])
    decode = decode_and_crop(args.repeats)
    print(f"decode + crop (JPEG 500x375, 2 views of 224): {decode['views_per_second_per_core']:.0f} views/s/core, "
          f"{decode['cores_per_gpu_at_2500']:.2f} cores per GPU at 2,500 views/s")
    write_json("dataloader", {"gpu_views_per_second": GPU_VIEWS_PER_SECOND, "rows": rows, "decode_and_crop": decode},
               args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
