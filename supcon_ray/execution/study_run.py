"""A study's run: its protocol's steps run in order on Ray Tune, each decision recorded once.

:func:`run_study` is what ``python -m supcon_ray.tune`` and :func:`supcon_ray.api.run` run after the
study file is loaded: for each step of :data:`supcon_ray.study.STEPS`, run what is planned and not
recorded (:class:`~supcon_ray.execution.executor.Executor`), then record the step's decision in the
manifest (:mod:`supcon_ray.results.manifest`). It stops at the first step that cannot decide (failed
trials) or when trials are left unfinished (Ctrl-C), and says so in its :class:`Outcome`; the
command's exit status follows from it (:func:`exit_status`). No module-level import here starts or
imports Ray: :func:`supcon_ray.execution.progress.configure_console` must run before Ray is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from supcon_ray.config import ConfigError
from supcon_ray.data.names import absolute_dataset_name, missing_files
from supcon_ray.execution.executor import Executor
from supcon_ray.execution.progress import StudyConsole, configure_console, set_current
from supcon_ray.execution.runner import storage_uri
from supcon_ray.plugins import PluginError, PluginSource, resolve
from supcon_ray.results.manifest import Manifest, analysis_edits, open_manifest, save_manifest
from supcon_ray.results.storage import ResultStore, read_results
from supcon_ray.study import Step, Study, margin_sentence, study_as_yaml
from supcon_ray.study import protocol
from supcon_ray.study.protocol import Decision


@dataclass
class Outcome:
    """How a run ended: its results folder, failed and unfinished trials, and why a step could not decide."""

    folder: str
    failed: int = 0
    unfinished: int = 0
    incomplete: str | None = None


def check_dataset_files(study: Study, source: str) -> None:
    """Refuse (exit 2, naming ``dataset``) a ``parquet:`` / ``imagefolder:`` dataset whose files are not
    on this machine, before Ray starts: otherwise every trial would start, then fail on the missing files."""
    problem = missing_files(absolute_dataset_name(study.dataset, study.folder))
    if problem:
        raise ConfigError(f"{source}: dataset: {study.dataset!r}: {problem}. Paths relative to the study file's "
                          "folder are read from there; a cluster's driver needs the files where it runs.")


def plugin_sources(study: Study) -> list[PluginSource]:
    """The study's plugins, each file read once: the digests the fingerprint records are those of the
    sources every trial process runs (:mod:`supcon_ray.plugins`)."""
    try:
        return resolve(study.plugins, study.folder)
    except PluginError as err:
        raise ConfigError(str(err)) from None


def values_text(values: dict[str, Any]) -> str:
    """A base's tuned values for the console: ``lr=0.1, momentum=0.9`` (floats to 4 significant digits),
    ``-`` for none."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()) or "-"


def run_study(study: Study, storage: str = "./results", resume: bool = False, address: str | None = None,
              max_concurrent: int | None = None, console=None, verbose: bool = False) -> Outcome:
    """Run the study's steps on Ray Tune: for each step, run what is planned and not recorded, then record
    its decision in the manifest. Stops at the first step that cannot decide (failed trials) or when
    trials are left unfinished (Ctrl-C); ``--resume`` goes on from there with the same decisions.
    ``console``: a :class:`supcon_ray.execution.progress.StudyConsole` (made here if None); ``verbose``: Ray's tables too."""
    configure_console(verbose)
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
            recorded = read_results(store.uri)[0].to_pandas() if _halving(study, step) else None
            planned = protocol.plan(study, step, manifest.decisions, recorded)
            analysed += planned.analysed
            if step == Step.TUNE_BASE and Decision.BASES in manifest.decisions:
                if study.tune_base is not None:  # a study without step 1 starts from its file's bases: nothing to say
                    console.write("step 1 already recorded: step 2 starts from the recorded bases")
                console.not_to_run(planned.trial_count)
                continue
            manifest.steps[step], manifest.analysed = planned.ids, analysed
            _record_rungs(manifest, planned, console)
            save_manifest(store, manifest)
            planned, ran = _run_step(study, step, planned, manifest, store, executor, console)
            manifest.steps[step] += [i for i in dict.fromkeys(ran) if i not in planned.ids]
            analysed += protocol.adaptive_entries(read_results(store.uri)[0].to_pandas(), ran) if step == Step.STUDY else []
            manifest.analysed = analysed
            save_manifest(store, manifest)
            if executor.unfinished or not _decide(study, step, planned, manifest, store, console, outcome):
                break
    finally:
        outcome.failed, outcome.unfinished = executor.failed, executor.unfinished
        manifest.cost = recorded_cost(store, manifest.decisions)
        save_manifest(store, manifest)
        console.close()
        set_current(None)
    return outcome


def _run_step(study: Study, step: Step, planned: protocol.Plan, manifest: Manifest, store: ResultStore,
              executor: Executor, console: StudyConsole) -> tuple[protocol.Plan, list[str]]:
    """Run a step's planned trials, then, while a search with fidelity has no pick, its next rungs, each
    planned from the recorded rows (every rung decided is recorded first). Returns the last plan and the
    ids the TPE searches ran."""
    ran = executor.run(planned, study.model_dump(mode="json"))
    previous = planned.ids
    while planned.pending and not executor.unfinished:
        following = protocol.plan(study, step, manifest.decisions, read_results(store.uri)[0].to_pandas())
        grew = following.ids != planned.ids
        planned = following
        manifest.steps[step] = planned.ids
        _record_rungs(manifest, planned, console)
        save_manifest(store, manifest)
        if not grew:  # a rung with failed runs: the step cannot decide (select says why)
            break
        done = set(previous)
        # the new rung's runs alone: the earlier ones were counted (recorded or run) in this sitting already
        ran += executor.run(replace(planned, specs=[x for x in planned.specs if x.trial_id not in done], adaptive=[]),
                            study.model_dump(mode="json"))
        previous = planned.ids
    return planned, ran


def _halving(study: Study, step: Step) -> bool:
    """Whether ``step`` has a search with fidelity, whose rungs are planned from the recorded rows."""
    if step == Step.TUNE_BASE:
        return study.tune_base is not None and study.tune_base.fidelity is not None
    return step == Step.STUDY and any(nz.fidelity is not None for nz in study.nuisance.values())


def _record_rungs(manifest: Manifest, planned: protocol.Plan, console: StudyConsole) -> None:
    """Record every rung the plan decided that the manifest does not hold yet (a rung is decided once), and
    say what it promoted."""
    rungs = manifest.decisions.setdefault(Decision.RUNGS, {}) if planned.halved else None
    for name, decided in planned.rungs.items():
        have = rungs.setdefault(name, [])
        h = planned.halved[name]
        for rung in decided[len(have):]:
            have.append(rung)
            best = ", ".join(values_text(h.configs[i]) for i in rung["promoted"])
            console.write(f"{name}: rung at {rung['epochs']} epochs, {len(rung['alive'])} configurations: "
                          + (f"picked {best}" if len(rung["promoted"]) == 1 else f"{len(rung['promoted'])} go on ({best})"))


def recorded_cost(store: ResultStore, decisions: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The study's cost so far from its recorded trials (:mod:`supcon_ray.results.cost`), with the disk its
    folder holds where it is local, and what its searches with fidelity saved (``decisions``: the manifest's);
    ``None`` before any trial is recorded."""
    from supcon_ray.results.cost import fidelity_savings, folder_bytes, study_costs

    try:
        trials = read_results(store.uri)[0].to_pandas()
        if trials.empty:
            return None
        disk = None if "://" in store.uri else folder_bytes(store.uri)
        name = str(trials["study"].iloc[0])
        cost = study_costs(trials, {name: disk}, {name: fidelity_savings(decisions)})
    except Exception:  # noqa: BLE001 - runs in a ``finally``: a cost that cannot be read must not hide why the run ended
        return None
    return next(iter(cost.values())).as_dict() if cost else None


def _decide(study: Study, step: Step, planned: protocol.Plan, manifest: Manifest, store: ResultStore,
            console: StudyConsole, outcome: Outcome) -> bool:
    """Record ``step``'s decision in the manifest once (never recomputed); False if it cannot be made."""
    if step == Step.TUNE_BASE and Decision.BASES in manifest.decisions \
            or step == Step.STUDY and Decision.NUISANCE in manifest.decisions:
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
    for loss, rec in (decision.get(Decision.BASES) or {}).items():
        if study.tune_base is not None:
            console.write(f"base of {loss}: {values_text(rec.get('values') or {})} ({protocol.source_text(rec.get('source'))}"
                          + (f", {rec['select']} mean {rec['mean']:.4f}" if rec.get("trial_ids") and rec.get("mean") is not None else "")
                          + (f", won at {rec['fidelity']['epochs']} epochs of successive halving" if rec.get("fidelity") else "")
                          + ")"
                          + (f"; {margin_sentence(rec['margin'])}" if rec.get("margin") else ""))
    return True


def exit_status(outcome: Outcome) -> int:
    """What the command exits with: 130 with trials unfinished (Ctrl-C), 1 with a step that could not decide
    or failed trials, else 0."""
    return 130 if outcome.unfinished else (1 if outcome.incomplete or outcome.failed else 0)
