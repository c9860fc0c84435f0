"""A plugin module activated again in the same process: the code that runs is always the code whose bytes
the fingerprint names.

Bug these tests catch: an edited plugin module activated again (a notebook re-loading a study, a reused
trial process, a driver loading a study twice) kept running the old code while its digest, and so the
study's fingerprint, named the new bytes; i.e. a cache in :mod:`supcon_ray.plugins._load` (``sys.modules``,
a dict of loaded modules or compiled code, importlib's finder caches, bytecode keyed by size and mtime)
that survives a change of the file's bytes. Each test loads the module the way a study driver
(``load_study`` / ``load_plugins``) or a trial process (``activate`` of the shipped sources) does, edits it
(same size and same mtime, or a different size), loads it again and checks the value the loss computes,
the digest, the study fingerprint, the module's recorded digest and the registered builder against each
other and against the SHA-256 of the file's current bytes. Activating unchanged bytes again keeps the
module, its fingerprint and its behaviour.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import os
import sys
from pathlib import Path

import pytest
import torch

from supcon_ray import registry
from supcon_ray.config import TrainConfig
from supcon_ray.networks.losses import plugin_objective
from supcon_ray.plugins import activate, digests, load_plugins, resolve
from supcon_ray.results.manifest import fingerprint
from supcon_ray.study import load_study

#: A classifier loss registered as examples/poly_loss.py registers poly1; FACTOR is what an edit changes.
PLUGIN = '''\
"""A test plugin: {factor} x the cross-entropy."""
import torch.nn.functional as F

from supcon_ray.plugins import register_loss

FACTOR = {factor}


@register_loss("{name}", kind="classifier")
def build(cfg):
    def scaled(logits, labels):
        return {expr}

    return scaled
'''
PLAIN = "FACTOR * F.cross_entropy(logits, labels)"
DOUBLED = "2.0 * (FACTOR * F.cross_entropy(logits, labels))  # the loss x 2: a longer file"

STUDY = """\
study: reload
plugins: [{entry}]
dataset: digits
losses: [ce, {name}]
seeds: [0]
vary:
  lr: [x1]
"""

LOGITS = torch.tensor([[1.0, -0.5, 0.25], [0.1, 0.7, -1.2], [2.0, 0.0, -0.3], [-0.4, 0.9, 0.6]])
LABELS = torch.tensor([0, 2, 1, 1])
_counter = itertools.count()


@pytest.fixture
def plugin(tmp_path):
    """A fresh module name and loss name per test, in a folder of their own; afterwards the module, the
    folder on sys.path and the names are gone (conftest's autouse fixture also forgets the names)."""
    n = next(_counter)
    module, name = f"reload_plugin_{os.getpid()}_{n}", f"reload{n}-scaled"
    folder = tmp_path / "plugins"
    folder.mkdir()
    saved_path = list(sys.path)
    yield folder / f"{module}.py", module, name
    sys.modules.pop(module, None)
    sys.path[:] = saved_path
    importlib.invalidate_caches()
    registry.forget_plugins()


def _write(path: Path, name: str, factor: str, expr: str = PLAIN) -> bytes:
    path.write_text(PLUGIN.format(name=name, factor=factor, expr=expr))
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _loss_value(name: str) -> float:
    """The loss as a run builds it (plugin_objective over the registered builder), on fixed input."""
    return plugin_objective(name, TrainConfig(loss=name))(LOGITS, LABELS).item()


def _ce() -> float:
    return torch.nn.functional.cross_entropy(LOGITS, LABELS).item()


def _load(route: str, path: Path, entry: str) -> str:
    """Load the plugin as ``route`` does; return the digest it records (the fingerprint's for a study)."""
    folder = path.parent
    if route == "study":  # a study driver: load_study loads the plugins, the fingerprint reads the digests
        study_file = folder / "study.yaml"
        study_file.write_text(STUDY.format(entry=entry, name=registry_name(path)))
        study = load_study(study_file)
        return fingerprint(study)["plugins"][entry]
    if route == "driver":  # supcon_ray.train / the driver: resolve and load
        (source,) = load_plugins([entry], str(folder))
        assert digests([entry], str(folder)) == {entry: source.digest}
        return source.digest
    # a trial process or Ray Train worker: the sources the driver read, as the dicts Ray passes
    (source,) = resolve([entry], str(folder))
    activate([source.as_dict()])
    return source.digest


def registry_name(path: Path) -> str:
    return path.read_text().split('register_loss("', 1)[1].split('"', 1)[0]


def _check_running(module: str, name: str, digest: str, data: bytes, factor: float) -> None:
    """The digest names ``data``, and the code that runs is the code in ``data``."""
    assert digest == _sha(data), "the recorded digest is not that of the file's bytes"
    loaded = sys.modules[module]
    assert loaded.__supcon_ray_digest__ == digest, "the module in sys.modules is recorded under other bytes"
    builder = registry.LOSSES.meta(name, "builder")
    assert registry.LOSSES.meta(name, "module") == module
    assert builder.__globals__ is loaded.__dict__, "the registered builder is not the loaded module's"
    assert loaded.FACTOR == factor, f"the running module has FACTOR {loaded.FACTOR}, its bytes say {factor}"


ROUTES = ["study", "driver", "trial"]
ENTRIES = ["path", "module name"]


def _entry(kind: str, path: Path) -> str:
    return path.name if kind == "path" else path.stem


@pytest.mark.parametrize("edit", ["same size, same mtime", "longer"])
@pytest.mark.parametrize("entry_kind", ENTRIES)
@pytest.mark.parametrize("route", ROUTES)
def test_an_edited_plugin_activated_again_runs_the_new_code_its_fingerprint_names(plugin, route, entry_kind, edit,
                                                                                 monkeypatch):
    # bytecode caching on (PYTHONDONTWRITEBYTECODE may turn it off): a loader that went through importlib's
    # file loader would find a stale .pyc whose header (source size and mtime) matches the edited file
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path, module, name = plugin
    entry = _entry(entry_kind, path)
    old = _write(path, name, "1.5")
    stat = path.stat()
    old_digest = _load(route, path, entry)
    _check_running(module, name, old_digest, old, 1.5)
    assert _loss_value(name) == pytest.approx(1.5 * _ce(), rel=1e-6)

    if edit == "longer":
        new, factor, want = _write(path, name, "1.5", DOUBLED), 1.5, 3.0 * _ce()
    else:  # one byte differs; size and mtime as before (what a bytecode cache would compare)
        new, factor, want = _write(path, name, "2.5"), 2.5, 2.5 * _ce()
        assert len(new) == len(old)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new_digest = _load(route, path, entry)

    assert new_digest != old_digest
    _check_running(module, name, new_digest, new, factor)
    assert _loss_value(name) == pytest.approx(want, rel=1e-6), "the edited plugin still runs its old code"


@pytest.mark.parametrize("entry_kind", ENTRIES)
@pytest.mark.parametrize("route", ROUTES)
def test_activating_unchanged_bytes_again_keeps_the_module_fingerprint_and_behaviour(plugin, route, entry_kind):
    path, module, name = plugin
    entry = _entry(entry_kind, path)
    data = _write(path, name, "1.5")
    first = _load(route, path, entry)
    loaded, builder, value = sys.modules[module], registry.LOSSES.meta(name, "builder"), _loss_value(name)
    again = _load(route, path, entry)
    assert again == first == _sha(data)
    assert sys.modules[module] is loaded and registry.LOSSES.meta(name, "builder") is builder  # not re-executed
    assert _loss_value(name) == value == pytest.approx(1.5 * _ce(), rel=1e-6)
    _check_running(module, name, again, data, 1.5)


@pytest.mark.parametrize("route", ROUTES)
def test_edited_and_edited_back_runs_each_version_in_turn(plugin, route):
    """A -> B -> A in one process: nothing keyed by the module name alone, nor by a digest seen before,
    keeps the wrong version."""
    path, module, name = plugin
    entry = _entry("path", path)
    for factor in ("1.5", "2.5", "1.5", "2.5"):
        data = _write(path, name, factor)
        digest = _load(route, path, entry)
        _check_running(module, name, digest, data, float(factor))
        assert _loss_value(name) == pytest.approx(float(factor) * _ce(), rel=1e-6)


@pytest.mark.parametrize("route", ["driver", "trial"])
def test_names_forgotten_between_loads_come_back_from_the_same_bytes(plugin, route):
    """What a notebook or a test does between studies (registry.forget_plugins): the module stays in
    sys.modules, its names do not; activating the same bytes registers them again."""
    path, module, name = plugin
    data = _write(path, name, "1.5")
    digest = _load(route, path, path.name)
    registry.forget_plugins()
    assert name not in registry.LOSSES
    assert _load(route, path, path.name) == digest
    _check_running(module, name, digest, data, 1.5)
    assert _loss_value(name) == pytest.approx(1.5 * _ce(), rel=1e-6)


def test_a_trial_process_runs_the_shipped_source_not_the_file_on_its_disk(plugin):
    """The shipped source wins over a stale or edited file at the same path: what runs is what the
    driver read (and fingerprinted), even when the file changed after."""
    path, module, name = plugin
    _write(path, name, "1.5")
    (source,) = resolve([path.name], str(path.parent))
    _write(path, name, "2.5")  # edited after the driver read it
    activate([source.as_dict()])
    _check_running(module, name, source.digest, source.source.encode(), 1.5)
    assert _loss_value(name) == pytest.approx(1.5 * _ce(), rel=1e-6)
    (newer,) = resolve([path.name], str(path.parent))
    activate([newer.as_dict()])
    _check_running(module, name, newer.digest, path.read_bytes(), 2.5)
    assert _loss_value(name) == pytest.approx(2.5 * _ce(), rel=1e-6)



def test_an_edited_package_plugin_loaded_again_runs_its_new_files(tmp_path):
    """A plugin that is a package is imported by name. ``import_module`` returned the package already in
    ``sys.modules`` (its old code) while the new digest was stamped on it, and after ``forget_plugins`` its
    names never came back: the package is now dropped and imported again whenever it must run anew."""
    n = next(_counter)
    package, name = f"reload_package_{os.getpid()}_{n}", f"reload{n}-package"
    init = tmp_path / package / "__init__.py"
    init.parent.mkdir()
    saved_path = list(sys.path)
    try:
        versions = [("1.0", PLAIN), ("1.0", DOUBLED), ("1.0", DOUBLED)]
        for factor, expr in versions:
            data = _write(init, name, factor, expr)
            (source,) = load_plugins([package], str(tmp_path))
            assert source.source is None and source.digest == _sha(data)  # a package: imported by name
            assert source.path == str(init.parent) and source.module == package
            assert sys.modules[package].__supcon_ray_digest__ == source.digest
            want = (2.0 if expr == DOUBLED else 1.0) * float(factor) * _ce()
            assert _loss_value(name) == pytest.approx(want, rel=1e-12), (factor, expr)
        registry.forget_plugins()
        assert name not in registry.LOSSES
        load_plugins([package], str(tmp_path))
        assert name in registry.LOSSES and _loss_value(name) == pytest.approx(2.0 * _ce(), rel=1e-12)
    finally:
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]
        sys.path[:] = saved_path


def test_a_plugin_the_user_imported_first_is_loaded_under_its_digest(plugin):
    """A module already in ``sys.modules`` that this loader never stamped (the user imported it in a notebook
    before loading the study) is loaded again from its bytes and stamped, not taken as it is."""
    path, module, name = plugin
    data = _write(path, name, "3.0")
    sys.path.insert(0, str(path.parent))
    user = importlib.import_module(module)
    assert not hasattr(user, "__supcon_ray_digest__")
    registry.forget_plugins()  # as if the names were never registered by the loader
    load_plugins([str(path)])
    assert sys.modules[module].__supcon_ray_digest__ == _sha(data)
    assert _loss_value(name) == pytest.approx(3.0 * _ce(), rel=1e-6)


def test_a_file_whose_name_is_not_a_module_name_is_refused_by_name(tmp_path):
    from supcon_ray.plugins import PluginError

    (tmp_path / "my-plugin.py").write_text("X = 1\n")
    with pytest.raises(PluginError, match=r"'my-plugin\.py': my-plugin\.py is not a Python module name"):
        resolve(["my-plugin.py"], str(tmp_path))
