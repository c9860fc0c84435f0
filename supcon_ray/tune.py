"""``python -m supcon_ray.tune --space search_spaces/<study>.yaml``: run a stability study.

Validates the study file, plans its trials (one factor at a time, or a sampled space), runs them
on Ray Tune (joining ``--address`` / ``RAY_ADDRESS``, or a local Ray instance), records each trial
in Parquet under ``<storage>/<study>/``, prints a per-loss summary and writes the stability report.

A study runs in steps (:mod:`supcon_ray.study.protocol`, run by :mod:`supcon_ray.execution.study_run`):
step 1 (``tune_base``) finds each loss's base
on the same budget, step 2 changes one factor at a time from there (with ``nuisance``
hyperparameters searched per setting on selection seeds), step 3 runs each nuisance pick on the
study seeds. One manifest (:mod:`supcon_ray.results.manifest`) records the plan, every decision and the
trials the statistics read. ``--quick`` applies the file's ``quick`` block (offline, CPU, small).
``--dry-run`` prints the steps with their budgets and trial counts. ``--resume`` continues an
interrupted study after checking that the study file still computes the same trials (exit 2
naming the changed keys otherwise): recorded trials and decisions are not redone, failed trials are
(their rows kept under ``attempts/``), interrupted ones restart from their last checkpoint.

The console shows one progress bar and one line per finished trial (:mod:`supcon_ray.execution.progress`;
plain lines when stdout is not a terminal), then the summary; Ray's own tables and checkpoint
lines only with ``--verbose``. Every trial that ends in an error, including one that never
started, is recorded with status ``failed`` and its error text.
Exit status 2 for bad input (file, names, numbers, resources, a cluster this driver cannot join),
1 if any trial failed (after the summary), 130 if interrupted (Ctrl-C) before every trial finished.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from supcon_ray.display import display
from supcon_ray.config import EXIT_USAGE, ConfigError, TrainConfig, make_train_config
from supcon_ray.execution.progress import StudyConsole, configure_console
from supcon_ray.execution.runner import storage_uri
# the run itself lives in the execution layer (supcon_ray.api runs studies too, without this command)
from supcon_ray.execution.study_run import Outcome, check_dataset_files, exit_status, run_study, values_text
from supcon_ray.results.manifest import analysed_rows, read_manifest
from supcon_ray.results.storage import ResultStore, read_results, read_text
from supcon_ray.results.cost import cost_line, fidelity_savings, folder_bytes, study_costs
from supcon_ray.study import Phase, Study, at_own_size, base_config, load_study
from supcon_ray.study.protocol import BASE_FROM_FILE, planned_trial_count, print_protocol, source_text


def build_parser(prog: str = "python -m supcon_ray.tune") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, type=Path, help="study file (YAML), e.g. search_spaces/optimizers.yaml")
    p.add_argument("--quick", action="store_true", help="apply the file's quick block: offline, CPU, minutes "
                   "(default: off)")
    p.add_argument("--dry-run", action="store_true", help="print the planned trials and resources, then exit "
                   "(default: off)")
    p.add_argument("--storage", default="./results", help="results root: a folder, s3://bucket/path or gs://... (default ./results)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study in the same storage "
                   "(default: off; refused if the study file now computes something else)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start a local instance)")
    p.add_argument("--max-concurrent-trials", type=int, help="trials at once, overriding "
                   "resources.max_concurrent_trials (default: the study file's, else as many as the cluster fits)")
    p.add_argument("--no-report", action="store_true", help="do not build the HTML report at the end (default: built)")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's status tables, checkpoint lines and log deduplication notices")
    return p


def print_plan(study: Study, out=None) -> None:
    """The ``--dry-run`` plan: resources, then every step with its budgets and trial counts."""
    out = out or sys.stdout
    r = study.resources
    print(f"study {study.study}: {study.description}".rstrip(": "), file=out)
    print(f"dataset={study.dataset} model={study.model} losses={','.join(study.losses)} seeds={study.seeds}", file=out)
    print(f"resources: {r.workers_per_trial} worker(s)/trial x ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU), "
          f"max_concurrent_trials={r.max_concurrent_trials or 'auto'}, launcher={r.launcher}", file=out)
    for loss in study.losses:
        print(f"  {loss}: {pipeline_line(make_train_config(base_config(study, loss)))}", file=out)
    print_protocol(study, out)


def pipeline_line(cfg: TrainConfig) -> str:
    """How a trial of ``cfg`` feeds and saves itself: loader workers, augmentation path, checkpoints, probe."""
    from supcon_ray.data.loader import loader_options  # deferred: imports torch (only --dry-run prints this)

    device = torch_device_kind(cfg)
    workers = loader_options(cfg.num_workers, cfg.cpus_per_worker, device)["num_workers"]
    path = cfg.augment_path if cfg.augment_path != "auto" else (
        "batched" if device.type == "cuda" else "batched at <= 64 px, else per image")
    source = "set" if cfg.num_workers is not None else "default"
    probe = f", linear_stage={cfg.linear_stage}" if cfg.contrastive else ""
    return (f"num_workers={workers} ({source}, per worker on {device.type}), augmentation {path}, "
            f"checkpoint every {cfg.checkpoint_every} epoch(s) and at each stage's end{probe}, amp={cfg.amp}")


def torch_device_kind(cfg: TrainConfig):
    """The device type a worker of ``cfg`` trains on (a GPU when it reserves one)."""
    import torch  # deferred: torch takes seconds to import, and only --dry-run asks this here

    return torch.device("cuda" if cfg.gpus_per_worker > 0 else "cpu")


def summarize(results_dir: str, out=None) -> None:
    """Each loss's base, then per loss the trials that enter the statistics (selection runs are counted
    on their own line)."""
    out = out or sys.stdout
    df = read_results(results_dir)[0].to_pandas()
    manifest = read_manifest(results_dir)
    bases = manifest.bases if manifest is not None else {}
    given = file_bases(results_dir) if bases else {}
    if bases:
        print("\nbase per loss:", file=out)
        for loss, rec in bases.items():
            origin = source_text(rec.get("source"))
            if rec.get("trial_ids"):
                origin += (f", {rec.get('select')} mean {rec['mean'] if rec.get('mean') is None else format(rec['mean'], '.4f')} over seeds {rec.get('seeds')} "
                           f"(best of {rec.get('configurations')}"
                           + (f" by successive halving, won at {rec['fidelity']['epochs']} epochs" if rec.get("fidelity") else "")
                           + f"; trial {rec['trial_ids'][0]})")
            values = rec.get("values") or (given.get(loss) if rec.get("source") == BASE_FROM_FILE else None) or {}
            print(f"  {display(loss):8} {values_text(values)}  [{origin}]", file=out)
    for flag in (manifest.flags if manifest is not None else []):
        print(f"note: {flag['text']}", file=out)
    used = analysed_rows(df, results_dir, manifest)
    width = max([8, *(len(display(str(x))) for x in used["loss"].unique())])
    print(f"\n{'loss':{width}} {'trials':>6} {'completed':>9} {'diverged':>8} {'failed':>6}  test_top1 mean ± std", file=out)
    for loss, g in used.groupby("loss"):
        counts = g["status"].value_counts()
        scored = g[g["status"] != "failed"]["test_top1"]
        stat = f"{scored.mean():.4f} ± {scored.std(ddof=1):.4f}" if len(scored) > 1 else (f"{scored.mean():.4f}" if len(scored) else "-")
        print(f"{display(loss):{width}} {len(g):>6} {counts.get('completed', 0):>9} {counts.get('diverged', 0):>8} "
              f"{counts.get('failed', 0):>6}  {stat}", file=out)
    print("(diverged trials count at chance level; failed trials have no score)", file=out)
    rest = df[~df["trial_id"].isin(used["trial_id"])]
    if len(rest):
        phases = rest["phase"].fillna(Phase.STUDY).value_counts().to_dict()
        print(f"not in the statistics: {len(rest)} trial(s) ({', '.join(f'{n} {p}' for p, n in phases.items())})", file=out)
    disk = None if "://" in results_dir else folder_bytes(results_dir)
    saved = fidelity_savings(manifest.decisions if manifest is not None else None)
    for cost in study_costs(df, {str(s): disk for s in df["study"].unique()},
                            {str(s): saved for s in df["study"].unique()}).values():
        print(f"cost: {cost_line(cost)}", file=out)


def main(argv: list[str] | None = None, prog: str = "python -m supcon_ray.tune") -> int:
    args = build_parser(prog).parse_args(argv)
    t0 = time.perf_counter()
    configure_console(args.verbose)  # before Ray is imported: it reads some of these when imported
    quick = " --quick" if args.quick else ""
    resume_cmd = f"  {prog} --space {args.space}{quick} --storage {args.storage} --resume"  # as the user typed it
    total = None
    try:
        study = load_study(args.space, quick=args.quick)
        check_dataset_files(study, args.space)
        study, size_note = at_own_size(study)
        if size_note:
            print(f"note: {size_note}", flush=True)
        total = planned_trial_count(study)  # plans (and so checks) every step before anything starts
        if args.max_concurrent_trials is not None and args.max_concurrent_trials < 1:
            raise ConfigError("--max-concurrent-trials must be >= 1")
        if args.dry_run:
            print_plan(study)
            return 0
        outcome = run_study(study, args.storage, args.resume, args.address, args.max_concurrent_trials,
                            console=StudyConsole(total), verbose=args.verbose)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        left = trials_left(total, study.study, args.storage) if total is not None else None
        print(f"\nInterrupted{f': {left} of {total} planned trials remain' if left is not None else ''}. Finished "
              f"trials are saved. Resume with:\n{resume_cmd}", file=sys.stderr)
        return 130
    summarize(outcome.folder)
    if not args.no_report and not (outcome.unfinished or outcome.incomplete):  # failed trials are counted in it
        # deferred: the report imports plotly and the statistics (about a second), only needed at the end
        from supcon_ray.reporting.files import build_report
        from supcon_ray.reporting.console import headline

        path, numbers = build_report(outcome.folder)
        print("\n".join(["", "verdict:", *(f"  {line}" for line in headline(numbers))]))
        print(f"report: {path}")
    print(f"results: {outcome.folder}  ({time.perf_counter() - t0:.0f} s)")
    problem = outcome_problem(outcome, trials_left(total, study.study, args.storage))
    if problem:
        print(f"{problem}\n{resume_cmd}", file=sys.stderr)
    return exit_status(outcome)


def file_bases(results_dir: str) -> dict[str, dict]:
    """``{loss: its own base block}`` of the study file the folder recorded (``study.yaml``), for bases given
    in the file ({} where it cannot be read)."""
    try:
        base = (yaml.safe_load(read_text(results_dir, "study.yaml") or "") or {}).get("base") or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {loss: dict(block) for loss, block in base.items() if loss != "common" and isinstance(block, dict) and block}


def trials_left(total: int, study: str, storage: str) -> int | None:
    """How many of the study's ``total`` planned trials have no finished row in ``storage`` yet (None where the
    folder cannot be read)."""
    try:
        done = len(ResultStore(storage_uri(storage), study).finished_ids())
    except Exception:  # noqa: BLE001 - only a count for a message
        return None
    return max(total - done, 0)


def outcome_problem(outcome: Outcome, left: int | None = None) -> str:
    """What went wrong, in one sentence that ends by saying how to continue (empty when nothing did); ``left``:
    the planned trials not finished yet."""
    if outcome.unfinished:
        remain = f"{left} planned trial(s) remain ({outcome.unfinished} were running)" if left is not None \
            else f"{outcome.unfinished} trial(s) unfinished"
        return f"\nStopped: {remain}. Finished trials are saved. Resume with:"
    if outcome.incomplete:
        return f"error: {outcome.incomplete}"
    if outcome.failed:
        return (f"error: {outcome.failed} trial(s) failed; their rows hold the error text (status 'failed'). "
                "Fix the cause, then run them again with:")
    return ""


if __name__ == "__main__":
    sys.exit(main())
