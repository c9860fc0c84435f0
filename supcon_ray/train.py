"""``supcon-ray train`` (or ``python -m supcon_ray.train``): one training run.

With ``--workers 1`` (the default) the run trains in this process; with ``--workers N > 1`` (or
``--ray``) it runs on Ray Train with N data-parallel workers, joining the cluster named by
``--address`` / ``RAY_ADDRESS`` or starting a local Ray instance. Every flag is a field of
:class:`supcon_ray.config.TrainConfig` (``--batch-size`` is ``batch_size``), so the CLI, study
files and workers share one definition. ``--json`` prints one final JSON object on stdout.

Exit status: 0 for a run that completed or diverged (``status`` says which), 2 for bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import EXIT_USAGE, ConfigError, TrainConfig, format_validation_error


def _flag_type(annotation: Any):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return _flag_type(args[0])
    if typing.get_origin(annotation) is typing.Literal:
        return str
    return annotation


PROG = "python -m supcon_ray.train"


def _option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of ``--option``, the value read as a YAML scalar (``2``, ``0.5``, ``true``, ``name``)."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE, e.g. --option epsilon=2")
    return name, yaml.safe_load(value)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Every :class:`TrainConfig` field as a flag (``--batch-size`` is ``batch_size``), described in words with
    its default and, for registered kinds, the names registered now (load plugins first to list theirs)."""
    from supcon_ray.flags import describe

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", nargs="+", metavar="MODULE", default=[],
                        help="modules (names or paths to .py files) registering losses, encoders or datasets to use "
                             "in this run; their names then appear below (see supcon_ray.plugins)")
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = _flag_type(field.annotation)
        default = "empty" if field.default is None else field.default
        help_text = f"{describe(name)} (default: {default})"
        if name == "options":
            parser.add_argument("--option", dest="options", action="append", type=_option, metavar="NAME=VALUE",
                                help=f"{describe(name)}; repeat for several")
        elif kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            literal = [a for a in typing.get_args(field.annotation)] if typing.get_origin(field.annotation) is typing.Literal else []
            metavar = "{" + ",".join(literal) + "}" if literal else None  # choices checked by TrainConfig (exit 2)
            parser.add_argument(flag, dest=name, type=kind, default=None, help=help_text, metavar=metavar)
    # the former boolean flag, kept as an alias
    parser.add_argument("--no-amp", dest="amp", action="store_const", const="off", help="same as --amp off")
    parser.add_argument("--output", type=Path, help="folder for checkpoint.pt (each epoch) and result.json")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    parser.add_argument("--json", action="store_true", help="print one final JSON object on stdout")
    parser.add_argument("--ray", action="store_true", help="run through Ray Train even with one worker")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local instance)")
    parser.add_argument("--no-progress", action="store_true", help="do not draw progress bars (default: drawn on a terminal)")
    return parser


def load_cli_plugins(argv: list[str] | None) -> list:
    """Load the plugins ``--plugins`` names (relative paths against the working directory) before the parser
    lists the registered names; return their sources (for Ray Train workers)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugins", nargs="+", default=[])
    entries = pre.parse_known_args(argv)[0].plugins
    if not entries:
        return []
    from supcon_ray.plugins import PluginError, load_plugins

    try:
        return load_plugins(entries, os.getcwd())
    except PluginError as err:
        raise ConfigError(f"--plugins: {err}") from None


def parse_config(argv: list[str] | None = None, prog: str = PROG) -> tuple[TrainConfig, argparse.Namespace]:
    sources = load_cli_plugins(argv)
    args = build_parser(prog).parse_args(argv)
    args.plugin_sources = [s.as_dict() for s in sources]
    values = {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None}
    if "options" in values:
        values["options"] = dict(values["options"])
    values = at_own_size(values)
    try:
        return TrainConfig(**values), args
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("\n", "; ")) from None


def at_own_size(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``image_size`` set to the dataset's images' own size where every image of a whole
    ``parquet:`` / ``imagefolder:`` dataset has one size and no size flag was given (printing which size
    and why); a missing or empty dataset folder is a :class:`ConfigError` naming ``--dataset``."""
    from supcon_ray.data.names import SIZE_KEYS, absolute_dataset_name, missing_files, own_size, validate_dataset_name

    name = values.get("dataset")
    if name is None:
        return values
    try:
        name = absolute_dataset_name(validate_dataset_name(name))
    except ValueError:
        return values  # TrainConfig names the bad value
    problem = missing_files(name)
    if problem:
        raise ConfigError(f"--dataset {values['dataset']}: {problem}")
    if any(values.get(key) is not None for key in SIZE_KEYS):
        return values
    try:
        side, note = own_size(name)
    except ValueError as err:
        raise ConfigError(f"--dataset {values['dataset']}: {err}") from None
    if note:
        print(f"note: {note}", file=sys.stderr)
    return values if side is None else {**values, "image_size": side}


def _local_reporter(output: Path | None, quiet: bool):
    from supcon_ray.engine.checkpoint import save_state
    from supcon_ray.execution.progress import epoch_line

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if output is not None and state is not None:
            save_state(state, output)
        if not quiet:
            print(epoch_line(metrics), file=sys.stderr)

    return report


def run_local(cfg: TrainConfig, output: Path | None, resume: bool, progress: bool) -> dict[str, Any]:
    """Train in this process (no Ray)."""
    import torch

    from supcon_ray.engine.checkpoint import load_state
    from supcon_ray.engine.trainer import Session, train

    state = load_state(output) if (resume and output is not None) else None
    if resume and state is None:
        print(f"note: nothing to resume in {output}; starting from scratch", file=sys.stderr)
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)) if cfg.workers > 1 else torch.get_num_threads())
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.gpus_per_worker > 0 else "cpu")
    session = Session(_local_reporter(output, quiet=False), device=device, resume_state=state, show_progress=progress)
    return train(cfg, session)


def run_ray(cfg: TrainConfig, output: Path | None, address: str | None, plugins: list[dict] | None = None) -> dict[str, Any]:
    """Train on Ray Train; checkpoints live under OUTPUT (default ./results/train)."""
    from supcon_ray.execution.distributed import fit_distributed
    from supcon_ray.execution.ray_runtime import init_ray

    init_ray(address)
    storage = (output or Path("results") / "train").resolve()
    # the name covers the whole configuration: a run with other settings never resumes this one's checkpoints
    digest = hashlib.sha1(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:10]
    name = f"{cfg.loss}-{cfg.dataset.replace(':', '_').replace('/', '_')}-{cfg.model}-s{cfg.seed}-{digest}"
    return fit_distributed(cfg, name, str(storage), plugins=plugins, epoch_lines=True)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    try:
        cfg, args = parse_config(argv, prog)
        if args.resume and args.output is None:
            raise ConfigError("--resume needs --output (the folder holding checkpoint.pt)")
        from supcon_ray.data.datasets import DataError

        t0 = time.perf_counter()
        try:
            if args.ray or cfg.workers > 1:
                result = run_ray(cfg, args.output, args.address, args.plugin_sources)
            else:
                result = run_local(cfg, args.output, args.resume, progress=not args.no_progress and sys.stderr.isatty())
        except DataError as err:
            raise ConfigError(str(err)) from None
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    result["wall_seconds"] = time.perf_counter() - t0
    summary = {k: v for k, v in result.items() if k != "history"}
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        tmp = args.output / ".result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str))
        os.replace(tmp, args.output / "result.json")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{cfg.loss}: status={summary['status']} test_top1={summary['test_top1']:.4f} "
              f"val_top1={summary['val_top1']:.4f} ({summary['seconds']:.1f}s, {summary['world_size']} worker(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
