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
    assert set(users) <= {"manifest.py", "report.py", "storage.py"}, users
    # the report only writes it on export, from the manifest module's own reading
    assert "read_text(results_dir, MANIFEST_FILE)" not in (PACKAGE / "report.py").read_text()


def test_run_study_fits_on_a_screen():
    from supcon_ray.tune import run_study

    lines = inspect.getsource(run_study).splitlines()
    assert len(lines) <= 60, len(lines)
    assert "def " not in "\n".join(lines[1:]), "no nested functions"
