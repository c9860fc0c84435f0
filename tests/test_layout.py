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
#: -> validated config -> plan -> trials -> Parquet -> statistics -> analysis -> report), and the statistics
#: know nothing of how the data was made. The base modules (exports, registry, designs, labels, display, config)
#: are below every layer.
LAYERS = {
    "plugins": {"registry", "display"},
    "data": {"config", "registry", "plugins", "exports"},
    "networks": {"config", "registry", "plugins", "exports"},
    "engine": {"config", "registry", "data", "networks", "plugins", "exports"},
    "study": {"config", "registry", "designs", "labels", "display", "data", "plugins", "exports"},
    "results": {"config", "study", "plugins", "display", "exports"},  # plugins: the digests of their files, never their code
    "execution": {"config", "registry", "study", "results", "engine", "data", "plugins", "display", "exports",
                  "__version__"},
    "stats": {"designs", "display"},
    "analysis": {"designs", "labels", "display", "stats", "results", "study", "exports"},
    "reporting": {"analysis", "labels", "stats", "results", "config", "exports"},
}
#: The modules outside the subpackages: the base modules import only the base modules before them; the
#: commands (``python -m supcon_ray.<name>``) and the API import layers, never a command.
TOP_LEVEL = {
    "exports": set(), "registry": set(), "designs": set(), "labels": set(), "display": set(),
    "config": {"data", "registry"}, "flags": {"data", "registry"},
    "api": {"analysis", "config", "execution", "reporting", "results", "study", "exports"},
    "train": {"config", "data", "engine", "execution", "flags", "plugins"},
    "tune": {"config", "data", "display", "execution", "reporting", "results", "study"},
    "report": {"config", "reporting", "results"},
    "power": {"analysis", "config", "results", "stats"},
    "cli": {"__version__", "config"},
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


def test_each_top_level_module_imports_only_what_its_kind_may():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(TOP_LEVEL), f"name the rule of each top-level module: {sorted(modules ^ set(TOP_LEVEL))}"
    offences = [f"{name}.py imports supcon_ray.{b}" for name, allowed in TOP_LEVEL.items()
                for b in sorted(_imported(PACKAGE / f"{name}.py") - allowed - {name})]
    assert not offences, offences


def _deferred_imports(path: Path) -> list[tuple[int, bool]]:
    """Each import inside a function: its line, and whether a comment on it or on the line before says why."""
    lines = path.read_text().splitlines()
    out = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                here, before = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
                said = "#" in here or before.strip().startswith("#")
                if not said:  # a group of deferred imports: the comment above the first one covers it
                    k = node.lineno - 2
                    while k >= 0 and lines[k].strip().startswith(("from ", "import ")):
                        k -= 1
                    said = k >= 0 and lines[k].strip().startswith("#")
                out.append((node.lineno, said))
    return out


def test_imports_sit_at_the_top_unless_a_comment_says_why_they_wait():
    """The analysis, the writers and the commands import at the top; a heavy import deliberately deferred
    (torch, Ray, Optuna, plotly) says so in a comment."""
    paths = [*(PACKAGE / "analysis").glob("*.py"), *(PACKAGE / "reporting").glob("*.py"),
             *(PACKAGE / name for name in ("api.py", "tune.py", "report.py", "power.py"))]
    silent = [f"{p.relative_to(PACKAGE)}:{line}" for p in sorted(paths) for line, said in _deferred_imports(p) if not said]
    assert not silent, silent


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
