"""Finding, hashing and loading plugin modules, in the driver and in every process that trains.

Every plugin resolves to the module it is loaded under and the file that defines it. The driver
reads each file's bytes once: their digest enters the study's fingerprint and the source travels to
the trial processes and Ray Train workers with the trials themselves (in the parameters Ray passes
each trial), so a process on another node runs exactly the bytes the fingerprint names, whether or
not the file exists there, and a process that never imported the plugin still finds its names. A
plugin that is a package (a folder with ``__init__.py``) is imported by name on every node (install
it there); its digest covers every ``.py`` file in it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from .. import registry
from ._register import PluginError

#: The entry-point group through which an installed package offers a plugin (loaded only when a study names it).
ENTRY_POINT_GROUP = "supcon_ray.plugins"


@dataclass(frozen=True)
class PluginSource:
    """One plugin as resolved by the driver: the ``entry`` as written in the study file, the ``module``
    it is loaded under, its ``path``, the SHA-256 ``digest`` of its bytes, and its ``source`` text
    (``None`` for a package, imported by name)."""

    entry: str
    module: str
    path: str
    digest: str
    source: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"entry": self.entry, "module": self.module, "path": self.path, "digest": self.digest,
                "source": self.source}


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def _entry_point_module(entry: str) -> str | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == entry:
            return ep.value.split(":", 1)[0].strip()
    return None


def _with_folder(folder: str | None):
    """The study file's folder on ``sys.path`` (first), so modules beside the study file import by name."""
    if folder and folder not in sys.path:
        sys.path.insert(0, folder)


def _digest_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        if len(files) > 1:
            h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def _resolve_one(entry: str, folder: str | None) -> PluginSource:
    if not isinstance(entry, str) or not entry.strip():
        raise PluginError(f"plugins: {entry!r}: give a module name, a path to a .py file, or an entry-point name")
    if _is_path(entry):
        path = (Path(folder or ".") / entry).resolve()
        if not path.is_file():
            raise PluginError(f"plugins: {entry!r}: no such file ({path})")
        module = path.stem
        if not module.isidentifier():
            raise PluginError(f"plugins: {entry!r}: {path.name} is not a Python module name")
        text = path.read_text()
        return PluginSource(entry, module, str(path), _digest_files([path]), text)
    module = _entry_point_module(entry) or entry
    _with_folder(folder)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        raise PluginError(f"plugins: {entry!r}: no module named {module!r} (looked beside the study file, on the "
                          f"Python path, and in the installed entry points of group {ENTRY_POINT_GROUP!r})")
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        files = sorted(origin.parent.rglob("*.py"))
        return PluginSource(entry, module, str(origin.parent), _digest_files(files), None)
    return PluginSource(entry, module, str(origin), _digest_files([origin]), origin.read_text())


def resolve(entries: list[str], folder: str | None = None) -> list[PluginSource]:
    """Each plugin of a study file (``folder``: the study file's folder, against which paths resolve and
    which is searched for module names), without importing any. Raises :class:`PluginError` naming a
    missing one, or two that load under one module name."""
    out: list[PluginSource] = []
    for entry in entries:
        source = _resolve_one(entry, folder)
        clash = next((s for s in out if s.module == source.module), None)
        if clash is not None:
            raise PluginError(f"plugins: {entry!r} and {clash.entry!r} would both load as module {source.module!r}; "
                              "rename one")
        out.append(source)
    return out


def digests(entries: list[str], folder: str | None = None) -> dict[str, str]:
    """``{entry: SHA-256 of its bytes}``: what of the plugins enters a study's fingerprint."""
    return {s.entry: s.digest for s in resolve(entries, folder)}


def activate(sources: list[PluginSource | dict]) -> None:
    """Load each plugin in this process (idempotent: a module already loaded from the same bytes is kept).
    A module with source is executed from that source under its module name, wherever this process runs;
    a package is imported by name. Raises :class:`PluginError` naming the module on any failure."""
    for s in sources:
        s = PluginSource(**s) if isinstance(s, dict) else s
        loaded = sys.modules.get(s.module)
        if loaded is not None and getattr(loaded, "__supcon_ray_digest__", None) == s.digest and _has_names(s.module):
            continue
        parent = str(Path(s.path).parent)
        _with_folder(parent if Path(parent).is_dir() else None)
        try:
            if s.source is None:
                _forget_package(s.module)  # edited since, or its names forgotten: run its files again
                module = importlib.import_module(s.module)
            else:
                module = types.ModuleType(s.module)
                module.__file__ = s.path
                module.__spec__ = importlib.util.spec_from_loader(s.module, loader=None, origin=s.path)
                module.__spec__.has_location = True
                sys.modules[s.module] = module
                exec(compile(s.source, s.path, "exec"), module.__dict__)  # the user's own plugin code
        except PluginError as err:
            sys.modules.pop(s.module, None)
            raise PluginError(f"plugin module {s.entry!r}: {err}") from None
        except Exception as err:  # noqa: BLE001 - any failure of the user's module is reported as its own
            sys.modules.pop(s.module, None)
            raise PluginError(f"plugin module {s.entry!r} failed to load: {type(err).__name__}: {err}") from None
        module.__supcon_ray_digest__ = s.digest


def _forget_package(name: str) -> None:
    """Drop a package and its submodules from ``sys.modules``, so that importing it runs its files as they
    are now (``import_module`` alone returns the module already loaded, with its old code)."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    importlib.invalidate_caches()


def _has_names(module: str) -> bool:
    """Whether ``module``'s names are still registered (:func:`supcon_ray.registry.forget_plugins` drops them)."""
    return any(meta.get("module") == module for reg in registry.REGISTRIES.values() for meta in reg.entries.values())


def load_plugins(entries: list[str], folder: str | None = None) -> list[PluginSource]:
    """Resolve and load a study's plugins in this process; return them (to pass to trial processes)."""
    sources = resolve(entries, folder)
    activate(sources)
    return sources
