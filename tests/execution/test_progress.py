"""The study console: a bar on a terminal, plain lines without control characters elsewhere."""

import io
import re

from supcon_ray.execution.progress import StudyConsole

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything but tab and newline


def _spec(loss, seed, setting="optimizer=sgd", phase="study"):
    return {"trial_id": f"{loss}-{setting}-s{seed}", "loss": loss, "seed": seed, "setting": setting, "phase": phase}


def _run(console):
    console.trial_started("a")
    console.trial_started("b")
    console.trial_finished("a", _spec("ce", 0), {"status": "completed", "val_top1": 0.81234, "test_top1": 0.8, "seconds": 12.34})
    console.trial_retried("b", _spec("supcon", 1), "RuntimeError: worker lost")
    console.trial_failed("b", _spec("supcon", 1), "Traceback...\nRuntimeError: worker lost\n", path="/x/b")
    console.trial_failed("b", _spec("supcon", 1), "again", path="/x/b")  # the same trial's result: counted once
    console.trial_failed("c", None, "ray.exceptions.ActorDiedError: never ran", path="/x/c")
    console.close()


def test_plain_lines_without_control_characters():
    out = io.StringIO()
    console = StudyConsole(3, stream=out, tty=False, every=2)
    _run(console)
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert lines[0].startswith("[1/3] CE") and "completed" in lines[0] and "val_top1 0.8123" in lines[0]
    assert "test_top1 0.8000" in lines[0] and lines[0].endswith("12.3 s")
    assert any(ln.startswith("warning: SupCon") and "retried" in ln for ln in lines)
    failed = [ln for ln in lines if ln.startswith("[2/3]")]
    assert len(failed) == 1 and "failed" in failed[0] and "error: RuntimeError: worker lost" in failed[0]
    assert any(ln.startswith("[3/3] (unidentified trial)") for ln in lines)
    # a progress line every 2 trials and at the end
    progress = [ln for ln in lines if ln.startswith("progress:")]
    assert progress[-1].startswith("progress: 3/3 trials done, 0 running, 2 failed")
    assert len(progress) == 2
    assert console.failed == 2 and console.done == 3
    assert set(console.errors) == {"supcon-optimizer=sgd-s1"} and console.errors["supcon-optimizer=sgd-s1"][1].startswith("Traceback")
    assert console.unidentified == ["ray.exceptions.ActorDiedError: never ran"]


def test_terminal_gets_a_bar_with_counts():
    out = io.StringIO()
    console = StudyConsole(3, stream=out, tty=True)
    _run(console)
    text = out.getvalue()
    assert "\r" in text  # the bar redraws in place
    final = text.rsplit("\r", 1)[-1]
    assert "3/3 trials" in final and "running 0, failed 2" in final
    assert "[1/3] CE" in text and "[2/3] SupCon" in text


def test_resumed_trials_leave_the_total():
    out = io.StringIO()
    console = StudyConsole(10, stream=out, tty=False)
    console.not_to_run(4)
    assert console.total == 6
    console.trial_finished("a", _spec("ce", 0), {"status": "diverged", "val_top1": 0.1, "test_top1": 0.1, "seconds": 1.0})
    assert out.getvalue().startswith("[1/6] CE")


def test_nuisance_runs_show_their_values():
    out = io.StringIO()
    console = StudyConsole(1, stream=out, tty=False)
    spec = _spec("ce", 0, phase="nuisance") | {"nuisance": {"lr": 0.003}}
    console.trial_finished("a", spec, {"status": "completed", "val_top1": 0.5, "test_top1": 0.5, "seconds": 1.0})
    assert out.getvalue().startswith("[1/1] nuisance CE      optimizer=sgd lr=0.003")


def test_worker_processes_say_nothing_of_an_exit_raised_in_a_weakref_callback():
    """Ray's SIGTERM handler raising SystemExit inside a weakref callback printed a traceback into the
    driver's console when a study ended (seen on a cluster joined without token auth); other unraisable
    errors still print."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import signal, sys, weakref, os
        from supcon_ray.execution.ray_runtime import quiet_exit_unraisable
        if sys.argv[1] == "hook":
            sys.unraisablehook = quiet_exit_unraisable
        class Thing: pass
        def raise_exit(ref): raise SystemExit(1)
        def raise_other(ref): raise ValueError("a real bug")
        a, b = Thing(), Thing()
        ra, rb = weakref.ref(a, raise_exit), weakref.ref(b, raise_other)
        del a, b
    """)
    runs = {mode: subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60)
            for mode in ("hook", "default")}
    assert "SystemExit" in runs["default"].stderr  # what users saw
    assert "SystemExit" not in runs["hook"].stderr and "Traceback" in runs["hook"].stderr
    assert "a real bug" in runs["hook"].stderr


def test_tunes_own_resume_advice_is_hidden_unless_verbose(caplog):
    """Ray Tune advises ``Tuner.restore(path=..., trainable=...)`` when interrupted; a study resumes with its
    own command, so the advice is dropped (kept with --verbose)."""
    import logging

    from supcon_ray.execution.progress import quiet_ray_loggers

    tune_logger = logging.getLogger("ray.tune.tune")
    advice = 'Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: Tuner.restore(path="/x", trainable=...)'
    try:
        quiet_ray_loggers(False)
        with caplog.at_level(logging.WARNING):
            tune_logger.warning(advice)
            tune_logger.warning("a warning of its own")
        assert "Tuner.restore" not in caplog.text and "a warning of its own" in caplog.text
        caplog.clear()
        quiet_ray_loggers(True)
        with caplog.at_level(logging.WARNING):
            tune_logger.warning(advice)
        assert "Tuner.restore" in caplog.text
    finally:
        quiet_ray_loggers(False)


def test_an_interrupted_study_counts_what_remains_and_names_the_command_as_typed(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    from supcon_ray import cli, tune
    from supcon_ray.execution import Outcome

    space = Path(__file__).resolve().parents[2] / "search_spaces" / "optimizers.yaml"
    args = ["tune", "--space", str(space), "--quick", "--storage", str(tmp_path)]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "run_study", interrupted)
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert "Interrupted: 38 of 38 planned trials remain. Finished trials are saved." in err
    assert f"  supcon-ray tune --space {space} --quick --storage {tmp_path} --resume" in err
    monkeypatch.setattr(tune, "run_study", lambda *a, **k: Outcome(str(tmp_path / "optimizers"), unfinished=2))
    monkeypatch.setattr(tune, "summarize", lambda folder: None)
    assert tune.main(args[1:]) == 130
    err = capsys.readouterr().err
    assert "Stopped: 38 planned trial(s) remain (2 were running)." in err
    assert f"  python -m supcon_ray.tune --space {space}" in err
