"""The one command: ``supcon-ray tune|train|report|power``, every subcommand's --help in words with its
defaults and registered names, plugins named on the command line, and the python -m forms unchanged."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from supcon_ray.cli import COMMANDS, main

SCRIPT = Path(sys.executable).parent / "supcon-ray"


def _run(*args, cwd=None):
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_console_script_is_installed_and_lists_its_commands_without_loading_torch():
    assert SCRIPT.is_file(), "pip install -e . puts supcon-ray beside the interpreter"
    out = _run("--help")
    assert out.returncode == 0 and all(f"  {name} " in out.stdout for name in COMMANDS), out.stdout
    code = "import sys; from supcon_ray.cli import usage; usage(); print('torch' in sys.modules, 'ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "False"]


def test_an_unknown_command_exits_2_naming_the_commands(capsys):
    assert main(["fit"]) == 2
    assert "unknown command 'fit'; must be one of: tune, train, report, power" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_describes_each_option_in_words_with_its_default(command):
    out = _run(command, "--help")
    assert out.returncode == 0 and out.stdout.startswith(f"usage: supcon-ray {command}"), out.stderr
    body = out.stdout.split("options:", 1)[1]
    helps = re.split(r"\n  (?=-)", body)[1:]  # one block per option
    assert len(helps) >= 4
    for block in helps:
        words = " ".join(block.split()[1:])
        assert len(re.findall(r"[a-z]{3,}", words)) >= 3, f"{command}: {block!r} is not described in words"
    body = " ".join(body.split())  # argparse wraps lines
    if command == "train":
        assert "(default: supcon)" in body and "one of: supcon, simclr, ce" in body
        assert "one of: resnet-mini, resnet-micro" in body and "one of: sgd, lars, rmsprop, adamw" in body
        assert "default: None" not in body


PLUGIN = '''
import torch.nn.functional as F
from supcon_ray.plugins import register_loss

@register_loss("cli_smooth", kind="classifier", options={"eps": 0.1})
def build(cfg):
    return lambda logits, labels: F.cross_entropy(logits, labels, label_smoothing=float(cfg.option("eps")))
'''


def test_plugins_named_on_the_command_line_appear_in_the_help_and_train_one_off(tmp_path):
    (tmp_path / "cli_plugin.py").write_text(PLUGIN)
    helped = _run("train", "--plugins", "cli_plugin.py", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "one of: supcon, simclr, ce, cli_smooth" in " ".join(helped.stdout.split())
    ran = _run("train", "--plugins", "cli_plugin.py", "--loss", "cli_smooth", "--option", "eps=0.2", "--epochs", "1",
               "--train-size", "200", "--test-size", "100", "--batch-size", "64", "--augment", "basic", "--json",
               cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert '"status": "completed"' in ran.stdout
    missing = _run("train", "--plugins", "absent.py", "--help", cwd=tmp_path)
    assert missing.returncode == 2 and "plugins: 'absent.py': no such file" in missing.stderr
    unknown = _run("train", "--plugins", "cli_plugin.py", "--loss", "cli_smooth", "--option", "beta=1", cwd=tmp_path)
    assert unknown.returncode == 2 and "options.beta: not an option" in unknown.stderr


def test_train_json_says_what_the_read_out_was(tmp_path):
    """The L-BFGS read-out (the default) is solved to convergence: the summary says so and gives it no epochs."""
    import json

    ran = _run("train", "--loss", "supcon", "--epochs", "1", "--train-size", "200", "--test-size", "100",
               "--batch-size", "64", "--augment", "basic", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    assert summary["linear_stage"] == "lbfgs" and summary["linear_epochs"] is None
    cached = _run("train", "--loss", "supcon", "--epochs", "1", "--train-size", "200", "--test-size", "100",
                  "--batch-size", "64", "--augment", "basic", "--linear-stage", "cached", "--linear-epochs", "2",
                  "--linear-batch-size", "64",
                  "--json", cwd=tmp_path)
    assert cached.returncode == 0, cached.stderr[-2000:]
    assert json.loads(cached.stdout.strip().splitlines()[-1])["linear_epochs"] == 2


def test_the_python_m_forms_keep_working():
    for module in ("supcon_ray.tune", "supcon_ray.train", "supcon_ray.report", "supcon_ray.power"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.startswith(f"usage: python -m {module}"), module
