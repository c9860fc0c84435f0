"""``python -m supcon_ray.tune --space search_spaces/<study>.yaml``: run a stability study.

Validates the study file, plans its trials (one factor at a time, or a sampled space), runs them
on Ray Tune (joining ``--address`` / ``RAY_ADDRESS``, or a local Ray instance), records each trial
in Parquet under ``<storage>/<study>/``, prints a per-loss summary and writes the stability report.

A study runs in steps (:mod:`supcon_ray.study.protocol`): step 1 (``tune_base``) finds each loss's base
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
from dataclasses import dataclass
from pathlib import Path

from .config import EXIT_USAGE, ConfigError, TrainConfig, make_train_config
from supcon_ray.study.definition import Study, at_own_size, base_config, load_study


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


def check_dataset_files(study: Study, source: str) -> None:
    """Refuse (exit 2, naming ``dataset``) a ``parquet:`` / ``imagefolder:`` dataset whose files are not
    on this machine, before Ray starts: otherwise every trial would start, then fail on the missing files."""
    from supcon_ray.data.names import absolute_dataset_name, missing_files

    problem = missing_files(absolute_dataset_name(study.dataset, study.folder))
    if problem:
        raise ConfigError(f"{source}: dataset: {study.dataset!r}: {problem}. Paths relative to the study file's "
                          "folder are read from there; a cluster's driver needs the files where it runs.")


def print_plan(study: Study, out=None) -> None:
    """The ``--dry-run`` plan: resources, then every step with its budgets and trial counts."""
    from supcon_ray.study.protocol import print_protocol

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
    from supcon_ray.data.loader import loader_options

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
    import torch

    return torch.device("cuda" if cfg.gpus_per_worker > 0 else "cpu")


def _fmt_values(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()) or "-"


def summarize(results_dir: str, out=None) -> None:
    """Each loss's base, then per loss the trials that enter the statistics (selection runs are counted
    on their own line)."""
    from supcon_ray.results.manifest import analysed_rows, read_manifest
    from supcon_ray.results.storage import read_results
    from supcon_ray.study import protocol

    out = out or sys.stdout
    df = read_results(results_dir)[0].to_pandas()
    manifest = read_manifest(results_dir)
    bases = manifest.bases if manifest is not None else {}
    if bases:
        print("\nbase per loss:", file=out)
        for loss, rec in bases.items():
            origin = protocol.source_text(rec.get("source"))
            if rec.get("trial_ids"):
                origin += (f", {rec.get('select')} mean {rec['mean']:.4f} over seeds {rec.get('seeds')} "
                           f"(best of {rec.get('configurations')}; trial {rec['trial_ids'][0]})")
            print(f"  {loss:8} {_fmt_values(rec.get('values') or {})}  [{origin}]", file=out)
    for flag in (manifest.flags if manifest is not None else []):
        print(f"note: {flag['text']}", file=out)
    used = analysed_rows(df, results_dir, manifest)
    print(f"\n{'loss':8} {'trials':>6} {'completed':>9} {'diverged':>8} {'failed':>6}  test_top1 mean ± std", file=out)
    for loss, g in used.groupby("loss"):
        counts = g["status"].value_counts()
        scored = g[g["status"] != "failed"]["test_top1"]
        stat = f"{scored.mean():.4f} ± {scored.std(ddof=1):.4f}" if len(scored) > 1 else (f"{scored.mean():.4f}" if len(scored) else "-")
        print(f"{loss:8} {len(g):>6} {counts.get('completed', 0):>9} {counts.get('diverged', 0):>8} "
              f"{counts.get('failed', 0):>6}  {stat}", file=out)
    print("(diverged trials count at chance level; failed trials have no score)", file=out)
    rest = df[~df["trial_id"].isin(used["trial_id"])]
    if len(rest):
        phases = rest["phase"].fillna("study").value_counts().to_dict()
        print(f"not in the statistics: {len(rest)} trial(s) ({', '.join(f'{n} {p}' for p, n in phases.items())})", file=out)


@dataclass
class Outcome:
    """How a run ended: its results folder, failed and unfinished trials, and why a step could not decide."""

    folder: str
    failed: int = 0
    unfinished: int = 0
    incomplete: str | None = None


def run_study(study: Study, storage: str = "./results", resume: bool = False, address: str | None = None,
              max_concurrent: int | None = None, console=None, verbose: bool = False) -> Outcome:
    """Run the study's steps on Ray Tune: for each step, run what is planned and not recorded, then record
    its decision in the manifest. Stops at the first step that cannot decide (failed trials) or when
    trials are left unfinished (Ctrl-C); ``--resume`` goes on from there with the same decisions.
    ``console``: a :class:`supcon_ray.execution.progress.StudyConsole` (made here if None); ``verbose``: Ray's tables too."""
    from supcon_ray.execution.progress import StudyConsole, configure_console, set_current

    configure_console(verbose)
    from supcon_ray.study import protocol
    from supcon_ray.execution.executor import Executor
    from supcon_ray.results.manifest import analysis_edits, open_manifest, save_manifest
    from supcon_ray.execution.runner import storage_uri
    from supcon_ray.results.storage import ResultStore, read_results
    from supcon_ray.study.definition import study_as_yaml

    sources = plugin_sources(study)
    store = ResultStore(storage_uri(storage), study.study)
    manifest = open_manifest(store, study, resume, {s.entry: s.digest for s in sources})
    for line in analysis_edits(manifest, study):
        print(f"note: {line}", flush=True)
    store.discard_partial_writes()  # half-written files of a killed run (nothing is running on this folder yet)
    retried = store.archive_failed() if resume else []
    if retried:
        print(f"{len(retried)} failed trial(s) will run again; their earlier rows are kept under {store.uri}/attempts/",
              flush=True)
    store.write_text("study.yaml", study_as_yaml(study))
    save_manifest(store, manifest)
    console = console or StudyConsole(protocol.planned_trial_count(study))
    set_current(console)
    executor = Executor(study, store, console, resume, address, max_concurrent, verbose,
                        plugins=[s.as_dict() for s in sources])
    outcome = Outcome(store.uri)
    analysed: list[dict[str, str]] = []
    try:
        for step in protocol.STEPS:
            planned = protocol.plan(study, step, manifest.decisions)
            analysed += planned.analysed
            if step == "tune_base" and "bases" in manifest.decisions:
                console.write("step 1 already recorded: step 2 starts from the recorded bases")
                console.not_to_run(planned.trial_count)
                continue
            manifest.stages[step], manifest.analysed = planned.ids, analysed
            save_manifest(store, manifest)
            ran = executor.run(planned, study.model_dump(mode="json"))
            manifest.stages[step] += [i for i in dict.fromkeys(ran) if i not in planned.ids]
            analysed += protocol.adaptive_entries(read_results(store.uri)[0].to_pandas(), ran) if step == "study" else []
            manifest.analysed = analysed
            save_manifest(store, manifest)
            if executor.unfinished or not _decide(study, step, planned, manifest, store, console, outcome):
                break
    finally:
        outcome.failed, outcome.unfinished = executor.failed, executor.unfinished
        save_manifest(store, manifest)
        console.close()
        set_current(None)
    return outcome


def _decide(study: Study, step: str, planned, manifest, store, console, outcome: Outcome) -> bool:
    """Record ``step``'s decision in the manifest once (never recomputed); False if it cannot be made."""
    from supcon_ray.study import protocol
    from supcon_ray.results.manifest import save_manifest
    from .stats.base_margin import margin_sentence
    from supcon_ray.results.storage import read_results

    if step == "tune_base" and "bases" in manifest.decisions or step == "study" and "nuisance" in manifest.decisions:
        return True
    try:
        decision = protocol.select(study, step, planned, read_results(store.uri)[0].to_pandas())
    except protocol.StepIncomplete as err:
        outcome.incomplete = str(err)
        return False
    manifest.decisions.update(decision)
    flags = protocol.edge_flags(study, manifest.decisions)
    for flag in flags[len(manifest.flags):]:
        console.write(f"note: {flag['text']}")
    manifest.flags = flags
    save_manifest(store, manifest)
    for loss, rec in (decision.get("bases") or {}).items():
        if study.tune_base is not None:
            console.write(f"base of {loss}: {_fmt_values(rec.get('values') or {})} ({protocol.source_text(rec.get('source'))}"
                          + (f", {rec['select']} mean {rec['mean']:.4f})" if rec.get("trial_ids") else ")")
                          + (f"; {margin_sentence(rec['margin'])}" if rec.get("margin") else ""))
    return True


def plugin_sources(study: Study) -> list:
    """The study's plugins, each file read once: the digests the fingerprint records are those of the
    sources every trial process runs (:mod:`supcon_ray.plugins`)."""
    from .plugins import PluginError, resolve

    try:
        return resolve(study.plugins, study.folder)
    except PluginError as err:
        raise ConfigError(str(err)) from None


def main(argv: list[str] | None = None, prog: str = "python -m supcon_ray.tune") -> int:
    args = build_parser(prog).parse_args(argv)
    t0 = time.perf_counter()
    from supcon_ray.execution.progress import StudyConsole, configure_console

    configure_console(args.verbose)  # before Ray is imported: it reads some of these when imported
    quick = " --quick" if args.quick else ""
    resume_cmd = f"  python -m supcon_ray.tune --space {args.space}{quick} --storage {args.storage} --resume"
    try:
        from supcon_ray.study.protocol import planned_trial_count

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
        print(f"\nInterrupted. Finished trials are saved. Resume with:\n{resume_cmd}", file=sys.stderr)
        return 130
    summarize(outcome.folder)
    if not args.no_report and not (outcome.unfinished or outcome.incomplete):  # failed trials are counted in it
        from .report import build_report
        from .reporting.numbers import headline

        path, numbers = build_report(outcome.folder)
        print("\n".join(["", "verdict:", *(f"  {line}" for line in headline(numbers))]))
        print(f"report: {path}")
    print(f"results: {outcome.folder}  ({time.perf_counter() - t0:.0f} s)")
    problem = outcome_problem(outcome)
    if problem:
        print(f"{problem}\n{resume_cmd}", file=sys.stderr)
    return exit_status(outcome)


def exit_status(outcome: Outcome) -> int:
    """What the command exits with: 130 with trials unfinished (Ctrl-C), 1 with a step that could not decide
    or failed trials, else 0."""
    return 130 if outcome.unfinished else (1 if outcome.incomplete or outcome.failed else 0)


def outcome_problem(outcome: Outcome) -> str:
    """What went wrong, in one sentence that ends by saying how to continue (empty when nothing did)."""
    if outcome.unfinished:
        return (f"\nStopped with {outcome.unfinished} trial(s) unfinished. Finished trials are saved. "
                "Resume with:")
    if outcome.incomplete:
        return f"error: {outcome.incomplete}"
    if outcome.failed:
        return (f"error: {outcome.failed} trial(s) failed; their rows hold the error text (status 'failed'). "
                "Fix the cause, then run them again with:")
    return ""


if __name__ == "__main__":
    sys.exit(main())
