"""The package's shape, as DEVELOPERS.md asks for it: no module imports another's private names, the
manifest is read in one place, and the study runner's main function fits on a screen."""

import ast
import inspect
from pathlib import Path

import supcon_ray

PACKAGE = Path(supcon_ray.__file__).parent


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_imports_another_modules_private_names():
    offences = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("supcon_ray")):
                offences += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offences, offences


def test_benchmarks_use_only_public_names_of_the_package():
    """Benchmarks drive the engine through its public API (``Trainer.stage``, ``Loop.step``), not its internals."""
    offences = []
    for path in sorted((PACKAGE.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("supcon_ray"):
                offences += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                offences.append(f"{path.name}: .{node.attr}")
    assert not offences, offences


def test_the_manifest_file_is_named_and_read_only_by_the_manifest_module():
    users = [p.relative_to(PACKAGE).as_posix() for p in _modules()
             if "manifest.json" in p.read_text() or "MANIFEST_FILE" in p.read_text()]
    assert set(users) <= {"results/manifest.py", "results/export.py", "results/storage.py"}, users
    # export only writes it, from the manifest module's own reading
    assert "read_text(results_dir, MANIFEST_FILE)" not in (PACKAGE / "results" / "export.py").read_text()


#: Each subpackage and the supcon_ray modules outside it that it may import: data flows one way (study file
#: -> validated config -> plan -> trials -> Parquet -> statistics -> report), and the statistics know
#: nothing of how the data was made.
LAYERS = {
    "stats": {"designs"},
    "study": {"config", "registry", "designs", "data", "stats", "plugins", "exports"},
    "results": {"config", "study", "plugins", "exports"},  # plugins: the digests of their files, never their code
    "reporting": {"config", "stats", "results", "study", "designs", "exports"},
    "data": {"config", "registry", "plugins", "exports"},
    "networks": {"config", "registry", "plugins", "exports"},
    "engine": {"config", "registry", "data", "networks", "plugins", "exports"},
    "execution": {"config", "registry", "study", "results", "engine", "data", "plugins", "exports", "__version__"},
    "plugins": {"registry"},
}


def _imported(path: Path) -> set[str]:
    """The top-level supcon_ray names (subpackage or module) that ``path`` imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("supcon_ray"):
            parts = node.module.split(".")
            out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("supcon_ray.")}
    return out


def test_each_layer_imports_only_the_layers_below_it():
    offences = []
    for layer, allowed in LAYERS.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            bad = _imported(path) - allowed - {layer}
            offences += [f"{path.relative_to(PACKAGE)} imports supcon_ray.{b}" for b in sorted(bad)]
    assert not offences, offences


def test_every_subpackage_lists_its_public_names_and_imports_nothing_heavy_to_list_them():
    import importlib
    import subprocess
    import sys

    for layer in LAYERS:
        package = importlib.import_module(f"supcon_ray.{layer}")
        assert package.__all__ == sorted(package.__all__), layer
        if hasattr(package, "__getattr__"):  # lazy (torch or Ray behind it): its names are exactly __all__
            assert dir(package) == package.__all__, layer
        for name in package.__all__:
            assert getattr(package, name) is not None, (layer, name)
    code = ("import sys, supcon_ray.data, supcon_ray.engine, supcon_ray.networks, supcon_ray.execution; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'ray')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_run_study_fits_on_a_screen():
    from supcon_ray.tune import run_study

    lines = inspect.getsource(run_study).splitlines()
    assert len(lines) <= 60, len(lines)
    assert "def " not in "\n".join(lines[1:]), "no nested functions"
