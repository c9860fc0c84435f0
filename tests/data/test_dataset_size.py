"""Your own images at their own size: a whole image folder or parquet dataset whose images all have one
size trains at that size (read from the headers), mixed sizes take the documented 224 crop, and the
resolved size is part of what a trial computes (so an older folder that ran at 224 refuses to resume)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from supcon_ray.data.names import MIXED_SIZE_CROP, image_sizes, own_size

ROOT = Path(__file__).resolve().parents[2]


def _folder(root: Path, sizes: list[tuple[int, int]], per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(2):
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = sizes[(i + c) % len(sizes)]
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_sizes_come_from_the_headers_and_mixed_sizes_keep_the_224_crop(tmp_path):
    one = _folder(tmp_path / "one", [(12, 12)])
    found = image_sizes(f"imagefolder:{one}")
    assert found.uniform == (12, 12) and found.read == 16 and found.complete
    side, note = own_size(f"imagefolder:{one}")
    assert side == 12 and "all 16 images are 12 x 12" in note
    mixed = _folder(tmp_path / "mixed", [(12, 12), (20, 16)])
    side, note = own_size(f"imagefolder:{mixed}")
    assert side is None and f"{MIXED_SIZE_CROP} px crop" in note and "12 x 12 and 20 x 16" in note
    assert not image_sizes(f"imagefolder:{mixed}").complete  # stopped at the second size
    wide = _folder(tmp_path / "wide", [(20, 16)])
    assert own_size(f"imagefolder:{wide}")[0] == 16
    assert own_size("digits") == (None, "")


def test_a_study_of_a_uniform_folder_trains_at_its_size_and_changes_its_fingerprint(tmp_path):
    import yaml

    from supcon_ray.results.manifest import changed_keys, fingerprint
    from supcon_ray.study import at_own_size, load_study, plan_trials

    _folder(tmp_path / "imgs", [(12, 12)])
    body = {"study": "own", "losses": ["ce"], "seeds": [0], "dataset": "imagefolder:imgs", "vary": {"optimizer": ["sgd"]}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(body))
    study = load_study(path)
    sized, note = at_own_size(study)
    assert sized.base.common["image_size"] == 12 and "12 x 12" in note
    assert plan_trials(sized)[0].train["image_size"] == 12  # recorded in the trial's config and id
    assert changed_keys(fingerprint(study), fingerprint(sized)) == ["base.common.image_size"]  # refuses, never mixes
    path.write_text(yaml.safe_dump({**body, "base": {"common": {"crop_size": 224}}}))
    assert at_own_size(load_study(path))[0].base.common == {"crop_size": 224}  # a size given by the study stands
    for name in ("fig4a_digits", "fig4a_cifar10_subset", "optimizers"):  # shipped studies: unchanged
        shipped = load_study(ROOT / "search_spaces" / f"{name}.yaml")
        assert at_own_size(shipped)[0] == shipped


@pytest.mark.slow
def test_the_train_cli_trains_a_uniform_folder_at_its_size(tmp_path, capsys):
    from supcon_ray.train import main, parse_config

    folder = _folder(tmp_path / "imgs", [(12, 12)], per_class=6)
    cfg, _ = parse_config(["--dataset", f"imagefolder:{folder}", "--loss", "ce"])
    assert cfg.image_size == 12
    assert "12 x 12" in capsys.readouterr().err
    assert parse_config(["--dataset", f"imagefolder:{folder}", "--crop-size", "8"])[0].image_size is None
    assert main(["--dataset", f"imagefolder:{folder}", "--loss", "ce", "--epochs", "1", "--batch-size", "4",
                 "--no-progress", "--json"]) == 0
    assert main(["--dataset", f"imagefolder:{tmp_path / 'absent'}", "--loss", "ce"]) == 2
    assert "--dataset" in capsys.readouterr().err
