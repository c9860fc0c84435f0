"""What a study prints while it runs: one progress bar, one line per finished trial, then the summary.

:class:`StudyConsole` owns the console. On a terminal it draws a tqdm bar (trials done / total,
running, failed, elapsed and ETA) and writes each finished trial's line above it. When stdout is
not a terminal (CI, ``ray job submit`` logs, a file) it writes plain lines only, with no control
characters: the per-trial lines and a progress line every :attr:`StudyConsole.every` trials.

:class:`supcon_ray.execution.tune_events.TuneEvents` is the Ray Tune callback that feeds it. It also collects every trial that
ends in an error, including trials that never started (their Tune result has no config), with
its planned spec and error text, so the runner can record them as ``failed``. Tune pickles its
callbacks with the experiment; the callback keeps nothing but how to read a spec, and sends its
events to the console of the study now running (:func:`current`).

:func:`configure_console` sets Ray's own output before Ray is imported: without ``verbose``
there are no status tables, checkpoint lines, deduplication notices or coloured prefixes; Ray's
warnings and errors show either way.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, TextIO

from supcon_ray.display import display
from supcon_ray.study import Phase

#: Loggers whose INFO lines are Ray's routine chatter (one per checkpoint of every trial, etc.).
CHATTY_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage", "ray.tune", "ray.train",
                  "ray.air", "ray.data", "ray._common", "ray.util")


def configure_console(verbose: bool, stream: TextIO | None = None) -> None:
    """Environment for Ray's own console output; call before Ray is imported (its constants read it then).

    An explicit setting in the environment wins over these defaults.
    """
    stream = stream or sys.stdout
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter: verbose=0 is silent there
    os.environ.setdefault("RAY_TQDM", "0")
    if not verbose:
        # Ray's "[repeated 3x across cluster] (Ray deduplicates logs ...)" notices
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not _is_terminal(stream):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # worker-line prefixes without ANSI colours
    os.environ["SUPCON_RAY_VERBOSE"] = "1" if verbose else "0"  # read by the worker set-up hook


class _NoTraceback(logging.Filter):
    """Keeps an error record's message and exception line, drops Tune's own traceback (the study
    prints the trial's error, and records its full text in the trial's row)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {_one_line(str(exc))}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def epoch_line(metrics: dict[str, Any]) -> str:
    """One training epoch for the console: ``[pretrain] epoch 3: loss 4.1234  lr 0.1  1200 img/s  val_top1 0.8``
    (no learning rate for the L-BFGS read-out; ``val_top1`` where the stage scored one)."""
    val = metrics.get("val_top1")
    val_text = f"  val_top1 {val:.4f}" if val is not None else ""
    lr_text = f"lr {metrics['lr']:.4g}  " if metrics.get("lr") is not None else ""
    return (f"[{metrics['stage']}] epoch {metrics['epoch']}: loss {metrics['train_loss']:.4f}  "
            f"{lr_text}{metrics['images_per_second']:.0f} img/s{val_text}")


class _NotOurAdvice(logging.Filter):
    """Drops Tune's advice to resume with ``Tuner.restore(...)`` (and its "trials did not complete" list): a
    study resumes with its own command, which the study prints (``--resume``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("Resume experiment with:" in text or "Resume training with:" in text
                    or text.startswith("Trials did not complete"))


_NO_TRACEBACK = _NoTraceback()
_NOT_OUR_ADVICE = _NotOurAdvice()
#: Logs Tune's own resume advice when a run is interrupted.
TUNE_LOGGER = "ray.tune.tune"
#: Logs a traceback of Tune's internals for every failed attempt of a trial.
TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"


def quiet_ray_loggers(verbose: bool) -> None:
    """Ray's INFO chatter only with ``verbose``; warnings and errors always (without Tune's
    internal tracebacks, and without its advice to resume through ``Tuner.restore``, unless ``verbose``)."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    controller, tune = logging.getLogger(TUNE_CONTROLLER_LOGGER), logging.getLogger(TUNE_LOGGER)
    if verbose:
        controller.removeFilter(_NO_TRACEBACK)
        tune.removeFilter(_NOT_OUR_ADVICE)
    else:
        controller.addFilter(_NO_TRACEBACK)
        tune.addFilter(_NOT_OUR_ADVICE)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _one_line(text: str, width: int = 200) -> str:
    """An error's last line (the exception and its message), trimmed: the full text is in the row."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1] if lines else "")
    line = "".join(c if c.isprintable() else " " for c in line)
    return line if len(line) <= width else line[: width - 3] + "..."


class StudyConsole:
    """The study's console: a bar on a terminal, plain lines elsewhere (see the module docstring)."""

    def __init__(self, total: int, stream: TextIO | None = None, tty: bool | None = None, every: int | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = _is_terminal(self.stream) if tty is None else tty
        self.total = max(0, int(total))
        self.every = every or max(1, round(self.total / 10))
        self.done = self.failed = 0
        self.running: set[str] = set()
        #: ``{planned trial_id: (spec, error text)}``: errored trials not yet recorded as ``failed``
        self.errors: dict[str, tuple[dict[str, Any], str]] = {}
        #: Tune trial folders whose error has been counted (so a result is never counted twice)
        self.error_paths: set[str] = set()
        #: error texts of errored trials whose spec could not be read (none expected)
        self.unidentified: list[str] = []
        self.started = time.monotonic()
        self._last_refresh = 0.0
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, file=self.stream, unit="trial", dynamic_ncols=True, leave=True,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} trials "
                                        "[{elapsed}<{remaining}]{postfix}", desc="study")
            self._show()

    # -- output ------------------------------------------------------------------------------
    def write(self, text: str) -> None:
        """A line above the bar (or a plain line)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"running {len(self.running)}, failed {self.failed}", refresh=False)
            self._bar.n = self.done
            self._bar.refresh()

    def eta_s(self) -> float:
        """Seconds left at the rate trials have finished so far (inf before the first one)."""
        if not self.done:
            return math.inf
        return (time.monotonic() - self.started) / self.done * max(0, self.total - self.done)

    def progress_line(self) -> str:
        return (f"progress: {self.done}/{self.total} trials done, {len(self.running)} running, {self.failed} failed, "
                f"elapsed {_clock(time.monotonic() - self.started)}, ETA {_clock(self.eta_s())}")

    # -- events ------------------------------------------------------------------------------
    def not_to_run(self, n: int) -> None:
        """``n`` planned trials are already recorded (a resumed study): they leave the total."""
        self.total = max(self.done, self.total - n)
        if self._bar is not None:
            self._bar.total = self.total
            self._show()

    def trial_started(self, key: str) -> None:
        self.running.add(key)
        self._show()

    def trial_retried(self, key: str, spec: dict[str, Any] | None, error: str) -> None:
        self.running.discard(key)
        self.write(f"warning: {self._name(spec)} failed and is retried: {_one_line(error)}")
        self._show()

    def trial_finished(self, key: str, spec: dict[str, Any] | None, result: dict[str, Any] | None,
                       error: str | None = None) -> None:
        """A trial ended: completed / diverged (``result``) or failed (``error``)."""
        self.running.discard(key)
        self.done += 1
        result = result or {}
        status = "failed" if error is not None else result.get("status", "?")
        self.failed += status == "failed"
        seconds = result.get("seconds")
        line = (f"[{self.done}/{self.total}] {self._name(spec)}  {status:9} val_top1 {_score(result.get('val_top1'))}"
                f"  test_top1 {_score(result.get('test_top1'))}  "
                + (f"{seconds:.1f} s" if isinstance(seconds, (int, float)) and math.isfinite(seconds) else "- s"))
        if error is not None:
            line += f"  error: {_one_line(error)}"
        self.write(line)
        if self._bar is None and (self.done % self.every == 0 or self.done == self.total):
            self.write(self.progress_line())
        self._show()

    def trial_failed(self, key: str, spec: dict[str, Any] | None, error: str, path: str | None = None) -> None:
        """A trial ended in an error (after its retries), whether or not it ever started."""
        if path is not None:
            if path in self.error_paths:
                return
            self.error_paths.add(path)
        if spec is not None:
            self.errors[spec["trial_id"]] = (spec, error)
        else:
            self.unidentified.append(error)
        self.trial_finished(key, spec, None, error)

    def tick(self) -> None:
        """Refresh the bar's clock about once a second (Tune calls this every loop)."""
        now = time.monotonic()
        if self._bar is not None and now - self._last_refresh >= 1.0:
            self._last_refresh = now
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._show()
            self._bar.close()
            self._bar = None

    @staticmethod
    def _name(spec: dict[str, Any] | None) -> str:
        if not spec:
            return "(unidentified trial)"
        phase = spec.get("phase", Phase.STUDY)
        tag = f"{phase} " if phase and phase != Phase.STUDY else ""
        setting = str(spec.get("setting", "?"))
        if spec.get("nuisance"):  # the re-tuned values tell a setting's nuisance runs apart
            setting += " " + ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in spec["nuisance"].items())
        return f"{tag}{display(str(spec.get('loss', '?'))):7} {setting:28} seed {spec.get('seed', '?')}"


_CURRENT: StudyConsole | None = None


def current() -> StudyConsole | None:
    """The console of the study running in this process, if any."""
    return _CURRENT


def set_current(console: StudyConsole | None) -> None:
    global _CURRENT
    _CURRENT = console
