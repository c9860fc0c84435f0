"""Plugins: a researcher's own losses (both kinds), encoders and datasets, loaded from a module outside
the repository, under the same protocol as the built-in ones; their source in the fingerprint; every
way a plugin can be wrong exits 2 (or fails its trial) naming the module and the name."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from supcon_ray import registry
from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.results.manifest import fingerprint, read_manifest
from supcon_ray.plugins import PluginError, resolve
from supcon_ray.study import load_study, plan_trials
from supcon_ray.tune import main

PLUGIN = '''
import torch
import torch.nn.functional as F

from supcon_ray.plugins import register_dataset, register_encoder, register_loss


@register_loss("{prefix}focal", kind="classifier", options={{"gamma": 2.0}})
def build_focal(cfg):
    gamma = float(cfg.option("gamma"))

    def focal(logits, labels):
        logp = F.log_softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** gamma * logp).mean()

    return focal


@register_loss("{prefix}align", kind="contrastive")
def build_align(cfg):
    def align(features, labels):  # alignment of the two views plus uniformity (Wang and Isola, 2020)
        a, b = features[:, 0], features[:, 1]
        z = features.flatten(0, 1)
        return (a - b).pow(2).sum(1).mean() + torch.pdist(z).pow(2).mul(-2).exp().mean().log()

    return align


class Tiny(torch.nn.Module):
    def __init__(self, in_channels, width):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, width, 3, padding=1)
        self.out_dim = width

    def forward(self, x):
        return self.conv(x).relu().mean((2, 3))


@register_encoder("{prefix}tiny", options={{"width": 16}})
def build_tiny(cfg, in_channels):
    return Tiny(in_channels, int(cfg.option("width")))


@register_dataset("{prefix}stripes")
def build_stripes(cfg):
    def split(n, offset):
        items = []
        for i in range(n):
            label = i % 3
            image = torch.zeros(1, 8, 8, dtype=torch.uint8)
            image[0, :, (label * 2 + i + offset) % 8] = 255
            items.append((image, label))
        return items

    return split(90, 0), split(30, 1)
'''

STUDY = """
study: mine
plugins: [../plugins_dir/my_losses.py]
dataset: digits
model: resnet-mini
losses: [{prefix}focal, {prefix}align]
compare: {{baseline: {prefix}focal}}
seeds: [0]
base:
  common: {{epochs: 1, batch_size: 256, augment: basic, train_size: 400, test_size: 200}}
  {prefix}focal: {{lr: 0.1, options: {{gamma: 1.0}}}}
  {prefix}align: {{lr: 0.1, linear_stage: cached, linear_epochs: 2}}
vary:
  optimizer: [sgd]
resources: {{workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2, max_failures: 0}}
"""


def _write(tmp_path: Path, prefix: str, study: str = STUDY, plugin: str = PLUGIN) -> Path:
    """A plugin module in a folder of its own (outside the repository) and a study file beside it."""
    (tmp_path / "plugins_dir").mkdir(exist_ok=True)
    (tmp_path / "plugins_dir" / "my_losses.py").write_text(plugin.format(prefix=prefix))
    (tmp_path / "study").mkdir(exist_ok=True)
    path = tmp_path / "study" / "mine.yaml"
    path.write_text(textwrap.dedent(study.format(prefix=prefix)))
    return path


@pytest.mark.ray
def test_plugin_losses_of_both_kinds_train_in_trial_processes_and_an_edit_refuses_to_resume(ray_session, tmp_path,
                                                                                             capsys):
    space = _write(tmp_path, "e2e_")
    storage = tmp_path / "results"
    assert main(["--space", str(space), "--storage", str(storage), "--no-report"]) == 0
    trials = pd.read_parquet(storage / "mine" / "trials")
    assert sorted(trials["loss"]) == ["e2e_align", "e2e_focal"] and (trials["status"] == "completed").all()
    assert trials["test_top1"].between(0, 1).all()
    options = dict(zip(trials["loss"], trials["options"]))
    assert json.loads(options["e2e_focal"]) == {"gamma": 1.0} and pd.isna(options["e2e_align"])
    # each kind trained its own stages: the contrastive plugin pre-trained and then fitted the linear stage
    epochs = pd.read_parquet(storage / "mine" / "epochs")
    stages = epochs.groupby("loss")["stage"].agg(lambda s: sorted(set(s))).to_dict()
    assert stages == {"e2e_align": ["linear", "pretrain"], "e2e_focal": ["ce"]}
    recorded = read_manifest(str(storage / "mine"))
    assert set(recorded.fingerprint["plugins"]) == {"../plugins_dir/my_losses.py"}
    # an edited plugin computes something else: --resume refuses, names the module, and adds nothing
    plugin = tmp_path / "plugins_dir" / "my_losses.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    capsys.readouterr()
    assert main(["--space", str(space), "--storage", str(storage), "--resume", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "plugin module '../plugins_dir/my_losses.py' was edited" in err
    assert len(pd.read_parquet(storage / "mine" / "trials")) == 2


def test_a_process_that_never_imported_the_plugin_finds_its_names_from_the_shipped_source(tmp_path):
    """What a trial process or Ray Train worker on another node does: it gets the sources the driver
    read, and the file need not exist there."""
    _write(tmp_path, "ship_")
    sources = [s.as_dict() for s in resolve(["../plugins_dir/my_losses.py"], str(tmp_path / "study"))]
    (tmp_path / "plugins_dir" / "my_losses.py").unlink()
    code = textwrap.dedent("""
        import json, sys, torch
        from supcon_ray import registry
        from supcon_ray.config import TrainConfig
        from supcon_ray.networks.losses import plugin_objective
        from supcon_ray.plugins import activate
        assert "ship_focal" not in registry.LOSSES
        activate(json.loads(sys.argv[1]))
        cfg = TrainConfig(loss="ship_focal", options={"gamma": 0.5})
        value = plugin_objective("ship_focal", cfg)(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
        print(registry.LOSSES.meta("ship_align", "kind"), value.ndim, cfg.option("gamma"))
    """)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(sources)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["contrastive", "0", "0.5"]


def test_plugin_encoder_and_dataset_train_through_the_same_loop(tmp_path):
    from supcon_ray.engine.trainer import Session, train

    _write(tmp_path, "net_")
    load_study(_write(tmp_path, "net_"))  # loads the plugin in this process
    cfg = TrainConfig(loss="net_focal", model="net_tiny", dataset="net_stripes", epochs=2, batch_size=30,
                      augment="none", lr=0.5, options={"width": 8}, val_fraction=0.2)
    result = train(cfg, Session(lambda *a: None, 0, 1, __import__("torch").device("cpu"), None))
    assert result["status"] == "completed" and 0 <= result["test_top1"] <= 1
    with pytest.raises(Exception, match="options.width: 'wide' is not a int"):
        TrainConfig(loss="net_focal", model="net_tiny", dataset="net_stripes", options={"width": "wide"})


@pytest.mark.parametrize("case, plugin, message", [
    ("missing module", None, "plugins: 'no_such_plugin_module': no module named 'no_such_plugin_module'"),
    ("missing file", None, "plugins: '../plugins_dir/absent.py': no such file"),
    ("taken name", 'from supcon_ray.plugins import register_loss\n@register_loss("supcon", kind="classifier")\n'
                   'def b(cfg):\n    return lambda x, y: x.sum()\n',
     "loss 'supcon' is already registered (built into supcon_ray.networks.losses); plugin module 'my_losses' cannot register"),
    ("failing import", "raise RuntimeError('broken on purpose')\n",
     "plugin module '../plugins_dir/my_losses.py' failed to load: RuntimeError: broken on purpose"),
    ("bad kind", 'from supcon_ray.plugins import register_loss\n@register_loss("x1", kind="ranking")\n'
                 'def b(cfg):\n    return None\n', "loss 'x1': kind must be one of: classifier, contrastive"),
])
def test_a_wrong_plugin_exits_2_naming_the_module_and_the_name(tmp_path, capsys, case, plugin, message):
    entry = {"missing module": "no_such_plugin_module", "missing file": "../plugins_dir/absent.py"}.get(
        case, "../plugins_dir/my_losses.py")
    study = STUDY.replace("[../plugins_dir/my_losses.py]", f"[{entry}]")
    space = _write(tmp_path, "bad_", study, plugin if plugin is not None else PLUGIN)
    assert main(["--space", str(space), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_two_modules_registering_one_name_exit_2(tmp_path, capsys):
    space = _write(tmp_path, "dup_")
    (tmp_path / "plugins_dir" / "other.py").write_text(
        'from supcon_ray.plugins import register_loss\n@register_loss("dup_focal", kind="classifier")\n'
        'def b(cfg):\n    return lambda x, y: x.sum()\n')
    space.write_text(space.read_text().replace("[../plugins_dir/my_losses.py]",
                                               "[../plugins_dir/my_losses.py, ../plugins_dir/other.py]"))
    assert main(["--space", str(space), "--dry-run"]) == 2
    assert "loss 'dup_focal' is already registered (plugin module 'my_losses'); plugin module 'other'" in \
        capsys.readouterr().err


def test_a_builder_that_breaks_the_contract_fails_its_trial_naming_module_and_loss(tmp_path):
    from supcon_ray.networks.losses import plugin_objective
    import torch

    plugin = ('from supcon_ray.plugins import register_loss\n'
              '@register_loss("contract_none", kind="classifier")\ndef a(cfg):\n    return 3\n'
              '@register_loss("contract_vector", kind="classifier")\ndef b(cfg):\n'
              '    return lambda logits, labels: logits.sum(1)\n')
    load_study(_write(tmp_path, "contract_", STUDY.replace("{prefix}focal", "contract_none").replace(
        "{prefix}align", "contract_vector").replace("options: {{gamma: 1.0}}", ""), plugin))
    with pytest.raises(PluginError, match="plugin module 'my_losses': loss 'contract_none': its builder returned int"):
        plugin_objective("contract_none", TrainConfig(loss="contract_none"))
    loss = plugin_objective("contract_vector", TrainConfig(loss="contract_vector"))
    with pytest.raises(PluginError, match=r"plugin module 'my_losses': loss 'contract_vector' returned \[4\], not a "
                                          "scalar tensor"):
        loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_plugin_options_are_set_and_varied_from_the_study_file_and_skip_the_other_losses(tmp_path):
    study = STUDY.replace("  optimizer: [sgd]", "  optimizer: [sgd]\n  options.gamma: [0.5, x2, 4.0]")
    s = load_study(_write(tmp_path, "opt_", study))
    specs = plan_trials(s)
    gamma = [sp for sp in specs if sp.factor == "options.gamma"]
    assert {sp.loss for sp in gamma} == {"opt_focal"}  # the contrastive plugin has no gamma: skipped
    assert sorted(sp.train["options"]["gamma"] for sp in gamma) == [0.5, 2.0, 4.0]  # x2 of the base's 1.0
    assert [sp.setting for sp in gamma] == ["options.gamma=0.5", "options.gamma=x2", "options.gamma=4"]
    assert all("options" not in sp.train for sp in specs if sp.loss == "opt_align")
    bad = study.replace("options: {{gamma: 1.0}}", "options: {{beta: 1.0}}")
    with pytest.raises(ConfigError, match="options.beta: not an option of loss 'opt_focal'.*their options: gamma"):
        load_study(_write(tmp_path, "opt_", bad))


def test_the_baseline_is_ce_or_named_and_must_be_a_loss_of_the_study(tmp_path, capsys):
    no_ce = STUDY.replace("compare: {{baseline: {prefix}focal}}\n", "")
    assert main(["--space", str(_write(tmp_path, "cmp_", no_ce)), "--dry-run"]) == 2
    assert "compare: the study has no ce to compare its losses with" in capsys.readouterr().err
    wrong = STUDY.replace("baseline: {prefix}focal", "baseline: supcon")
    assert main(["--space", str(_write(tmp_path, "cmp_", wrong)), "--dry-run"]) == 2
    assert "compare.baseline: 'supcon' is not one of the study's losses" in capsys.readouterr().err


def test_studies_without_plugins_keep_their_fingerprint_keys(tmp_path):
    s = load_study(Path(__file__).resolve().parents[2] / "search_spaces" / "fig4a_digits.yaml")
    assert "plugins" not in fingerprint(s) and "compare" not in fingerprint(s)
    with_plugin = load_study(_write(tmp_path, "fp_"))
    assert set(fingerprint(with_plugin)["plugins"]) == {"../plugins_dir/my_losses.py"}
    assert len(fingerprint(with_plugin)["plugins"]["../plugins_dir/my_losses.py"]) == 64


def test_listing_names_loads_no_plugin_and_the_report_reads_plugin_studies_without_them():
    code = ("import sys; import supcon_ray.report, supcon_ray.power, supcon_ray.study.validation; "
            "from supcon_ray.study import Study; "
            "s = Study.model_validate({'study': 'x', 'losses': ['poly9', 'ce'], 'seeds': [0], "
            "'vary': {'lr': ['x1']}, 'base': {'poly9': {'lr': 0.1}}}, context={'recorded': True}); "
            "print(s.losses, s.base.block('poly9'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['poly9', 'ce'] {'lr': 0.1}"
    assert "poly9" not in registry.LOSSES


def test_an_installed_package_offers_a_plugin_through_the_entry_point_group_only_when_named(tmp_path, monkeypatch,
                                                                                           capsys):
    import importlib.metadata

    from supcon_ray.plugins import ENTRY_POINT_GROUP

    site = tmp_path / "site"
    (site / "ep_pkg").mkdir(parents=True)
    (site / "ep_pkg" / "__init__.py").write_text("")
    (site / "ep_pkg" / "losses.py").write_text(PLUGIN.format(prefix="ep_"))
    monkeypatch.syspath_prepend(str(site))
    offered = [importlib.metadata.EntryPoint(name="ep-losses", value="ep_pkg.losses", group=ENTRY_POINT_GROUP)]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: offered if kw.get("group") == ENTRY_POINT_GROUP else real(**kw))
    study = STUDY.replace("[../plugins_dir/my_losses.py]", "[ep-losses]")
    space = _write(tmp_path, "ep_", study)
    (tmp_path / "plugins_dir" / "my_losses.py").unlink()  # only the installed package offers the names
    s = load_study(space)
    assert s.losses == ["ep_focal", "ep_align"] and registry.LOSSES.meta("ep_focal", "module") == "ep_pkg.losses"
    assert set(fingerprint(s)["plugins"]) == {"ep-losses"}
    registry.forget_plugins()
    # a study that does not name the entry point never loads it
    plain = load_study(Path(__file__).resolve().parents[2] / "search_spaces" / "fig4a_digits.yaml")
    assert plain.plugins == [] and "ep_focal" not in registry.LOSSES


@pytest.mark.ray
def test_ray_train_workers_load_the_plugin_from_the_shipped_source(ray_session, tmp_path):
    """A 2-worker trial goes through Ray Train: its worker processes never imported the plugin and build the
    plugin's contrastive loss from the sources in their train_loop_config."""
    study = STUDY.replace("losses: [{prefix}focal, {prefix}align]", "losses: [{prefix}align]").replace(
        "compare: {{baseline: {prefix}focal}}\n", "").replace(
        "workers_per_trial: 1, cpus_per_worker: 1", "workers_per_trial: 2, cpus_per_worker: 0.5")
    space = _write(tmp_path, "rt_", study)
    storage = tmp_path / "results"
    assert main(["--space", str(space), "--storage", str(storage), "--no-report"]) == 0
    trials = pd.read_parquet(storage / "mine" / "trials")
    assert trials["loss"].tolist() == ["rt_align"] and trials["world_size"].tolist() == [2]
    assert trials["status"].tolist() == ["completed"]


def test_a_display_name_is_what_every_writer_shows_and_the_recorded_name_stays(tmp_path, capsys):
    """``display=`` at registration: the dry run's table (sized to the names), the manifest's record, and a
    folder's report, figure legends included, name the loss so; rows, ids and JSON keys keep its name."""
    from supcon_ray.analysis import read_study_folders
    from supcon_ray.plugins import register_loss
    from supcon_ray.reporting.files import build_report
    from supcon_ray.display import display_names
    from supcon_ray.display import display, forget_display_names

    (tmp_path / "long.py").write_text(
        'from supcon_ray.plugins import register_loss\n'
        '@register_loss("longmethodname", kind="classifier", display="Long Method Name")\n'
        'def build(cfg):\n    import torch.nn.functional as F\n    return F.cross_entropy\n')
    space = tmp_path / "long.yaml"
    space.write_text(textwrap.dedent("""
        study: long
        dataset: digits
        losses: [ce, longmethodname]
        seeds: [0]
        plugins: [long.py]
        base: {common: {epochs: 1}}
        vary: {optimizer: [sgd, lars]}
    """))
    assert main(["--space", str(space), "--dry-run"]) == 0
    table = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ") and (" study " in ln or
                                                                                        ln.strip().startswith("loss "))]
    assert any(ln.startswith("  Long Method Name study") for ln in table), table
    assert len({ln.index(" study ") if " study " in ln else ln.index(" phase ") for ln in table}) == 1, table  # aligned
    assert display_names(load_study(space).losses) == {"longmethodname": "Long Method Name"}
    assert [s.loss for s in plan_trials(load_study(space))] == ["ce", "longmethodname"] * 2  # recorded as named
    with pytest.raises(PluginError, match="display must be a name of 1 to 40 printable characters"):
        register_loss("odd-display", kind="classifier", display="x" * 41)
    # a published folder names its plugin loss as recorded, with the plugin not loaded
    registry.forget_plugins()
    forget_display_names()
    folder = Path(__file__).resolve().parents[2] / "docs" / "results" / "fig4a-three-methods-digits"
    assert display("poly1") == "poly1"
    read_study_folders([str(folder)])
    assert display("poly1") == "Poly-1"
    page, numbers = build_report([str(folder)], str(tmp_path / "r.html"))
    html = page.read_text()
    assert '"name":"Poly-1"' in html and '"name":"poly1"' not in html  # the figure's legend
    assert {f.method for f in numbers.factors} >= {"poly1"}  # the recorded name in the numbers
