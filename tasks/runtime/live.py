"""A live view of a render in the terminal that runs it (`faceless render`).

In-process only: the stage tasks report to a listener in this process, nothing goes through
the Prefect server. While `watch()` is active,

- every stage task made by `caching.with_store` gets task-run state hooks: Running (also a
  retry's), Completed (also Cached) and Failed tell which stages run and which are done;
- `Progress` (denoising steps, encoded frames) reports here as well as to its artifact;
- the flow says how many stages there are once the storyboard knows the shots (`expect`).

On a terminal (stderr) the view is a rich live display: stages done of total, and a bar per
running stage; each finished stage leaves one line above it. Prefect's console log lines, and
any stray write to stdout or stderr, are printed above the display through the same console;
the task engine's `Finished in state Completed()` line per task is left out (the stage's
line says it; failures and warnings always show). Elsewhere (a pipe, a file, TERM=dumb,
FACELESS_LIVE=0) it writes plain lines on stderr: one per finished stage, and a progress line
for a running stage at most every FACELESS_PROGRESS_EVERY_S seconds (15), beside Prefect's
log. stdout's last line stays the video's path (cli.py prints it after the view has closed).
Without `watch()` (deployments, workers, tests of the flow) nothing here runs and the stage
tasks get no hooks.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from faceless.tasks.runtime import store

# One lock for the bookkeeping and for everything written to the terminal: rich's Live is not
# safe against a print from one thread while another refreshes (the cursor moves up by a
# stale height and wipes lines), so the view refreshes itself from its own thread, under it.
_lock = threading.RLock()
_view: "_View | None" = None

_UNITS = {"steps": "denoising", "frames": "encoding"}


# ---- what the stages call ------------------------------------------------------------------

def hooks() -> dict:
    """Task options for a stage task: state hooks reporting to the active view, or nothing."""
    if _view is None:
        return {}
    return {"on_running": [_live_running], "on_completion": [_live_finished], "on_failure": [_live_finished]}


def expect(total: int) -> None:
    """The number of stage tasks the flow will run (known once the storyboard has the shots)."""
    view = _view
    if view is not None:
        view.expect(total)


def progress(run_id, done: int, total: int, unit: str) -> None:
    """A running stage's progress (`run_id`: its task run's id, or None outside Prefect)."""
    view = _view
    if view is not None and run_id is not None:
        view.progress(run_id, done, total, unit)


def _label(task, parameters: dict) -> str:
    member = parameters.get("member")
    if isinstance(member, dict) and member.get("name"):  # the cast stage: a member, not a shot
        return f"{task.name} {member['name']}"
    labels = getattr(task.cache_policy, "labels", ()) or ()
    scene = next((parameters[name] for name in labels if name in parameters), None)
    return task.name if scene is None else f"{task.name} shot {scene}"


def _live_running(task, task_run, state) -> None:
    from prefect.context import TaskRunContext

    view = _view
    if view is not None:
        context = TaskRunContext.get()
        view.started(task_run.id, _label(task, context.parameters if context else {}))


def _live_finished(task, task_run, state) -> None:
    view = _view
    if view is None:
        return
    cached = state.name == "Cached"
    if state.is_completed() and not cached:
        try:  # the stage's artifact reference: it says when the store already had the artifact
            ref = store.as_ref(state.result(raise_on_failure=False))
            cached = ref is not None and bool(ref.get("cached"))
        except Exception:
            pass
    view.finished(task_run.id, "cached" if cached else "done" if state.is_completed() else "failed")


class _QuietHooks(logging.Filter):
    """Drops the task engine's two lines around every call of the hooks above (everywhere:
    the console and the run's logs on the server)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Running hook '_live_", "Hook '_live_"))


class _Replaced(logging.Filter):
    """Drops, from the console only, the task engine's `Finished in state ...` line for a task
    that did not fail: the view's line for that stage says it (and the server keeps the line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and record.name.startswith("prefect.task_runs")
                    and str(record.msg).startswith("Finished in state"))


# ---- the views -----------------------------------------------------------------------------

class _Stage:
    def __init__(self, label: str):
        self.label = label
        self.started = time.monotonic()
        self.attempt = 1
        self.done = 0
        self.total: int | None = None
        self.unit = ""
        self.reported = self.started  # plain view: when this stage last had a progress line
        self.bar = None  # live view: its rich task id

    def what(self) -> str:
        if self.total is None:
            return ""
        return f"{_UNITS.get(self.unit, '')} {self.done}/{self.total} {self.unit}".strip()


class _View:
    """Bookkeeping shared by both views; subclasses draw. Called from task threads."""

    def __init__(self):
        self.running: dict = {}
        self.total: int | None = None
        self.finished_count = 0
        self.cached = 0
        self.failed = 0

    def count(self) -> str:
        text = f"{self.finished_count}/{self.total if self.total is not None else '?'}"
        extras = [f"{self.cached} cached"] if self.cached else []
        extras += [f"{self.failed} failed"] if self.failed else []
        return text + (f" ({', '.join(extras)})" if extras else "")

    def expect(self, total: int) -> None:
        with _lock:
            self.total = total
            self.drawn()

    def started(self, run_id, label: str) -> None:
        with _lock:
            stage = self.running.get(run_id)
            if stage is None:
                stage = self.running[run_id] = _Stage(label)
                self.added(stage)
            else:  # a retry
                stage.attempt += 1
                stage.done, stage.total = 0, None
                self.drawn(stage)

    def progress(self, run_id, done: int, total: int, unit: str) -> None:
        with _lock:
            stage = self.running.get(run_id)
            if stage is None:
                return
            stage.done, stage.total, stage.unit = min(done, total), total, unit
            self.progressed(stage)

    def finished(self, run_id, outcome: str) -> None:
        with _lock:
            stage = self.running.pop(run_id, None)
            if stage is None:
                return
            if outcome == "failed":
                self.failed += 1
            else:
                self.finished_count += 1
                self.cached += outcome == "cached"
            self.removed(stage, outcome, time.monotonic() - stage.started)

    @staticmethod
    def line(stage: _Stage, outcome: str, seconds: float) -> str:
        retried = f", attempt {stage.attempt}" if stage.attempt > 1 else ""
        if outcome == "cached":
            return f"{stage.label}: cached"
        if outcome == "failed":
            return f"{stage.label}: FAILED after {seconds:.1f} s{retried}"
        return f"{stage.label}: done in {seconds:.1f} s{retried}"

    # drawing (under _lock)
    def added(self, stage: _Stage) -> None: ...
    def progressed(self, stage: _Stage) -> None: ...
    def removed(self, stage: _Stage, outcome: str, seconds: float) -> None: ...
    def drawn(self, stage: _Stage | None = None) -> None: ...


class _PlainView(_View):
    def __init__(self, stream, every_s: float):
        super().__init__()
        self.stream = stream
        self.every_s = every_s

    def write(self, text: str) -> None:
        try:
            self.stream.write(f"faceless: {text}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not fail the render
            pass

    def progressed(self, stage: _Stage) -> None:
        now = time.monotonic()
        if stage.done < (stage.total or 0) and now - stage.reported >= self.every_s:
            stage.reported = now
            self.write(f"{stage.label}: {stage.what()}")

    def removed(self, stage: _Stage, outcome: str, seconds: float) -> None:
        self.write(f"[{self.count()}] {self.line(stage, outcome, seconds)}")


def _Spinner(**options):
    from rich.progress import SpinnerColumn

    class Spinner(SpinnerColumn):
        """A tick only when the view says a row is over: a stage whose steps are all done is still
        running (decoding, interpolating, writing its clip)."""

        def render(self, task):
            return self.finished_text if task.fields.get("over") else self.spinner.render(task.get_time())

    return Spinner(**options)


class _LiveView(_View):
    def __init__(self, console):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        super().__init__()
        self.console = console
        self.bars = Progress(
            _Spinner(finished_text="[green]✓"), TextColumn("{task.description}"), BarColumn(bar_width=24),
            TextColumn("{task.fields[what]}"), TimeElapsedColumn(),
            console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False,
        )
        self.overall = self.bars.add_task("[bold]stages", total=None, what="0/?", over=False)
        self.stopped = threading.Event()
        self.ticker = threading.Thread(target=self.tick, name="faceless-live", daemon=True)

    def __enter__(self):
        with _lock:
            self.bars.start()
        self.ticker.start()
        # Stray writes (a library's print or warning) go above the display, under the lock.
        self.saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _Above(self)
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout, sys.stderr = self.saved
        self.stopped.set()
        self.ticker.join()
        with _lock:
            self.bars.refresh()
            self.bars.stop()

    def tick(self) -> None:
        while not self.stopped.wait(0.25):  # spinners and clocks move; 4 frames a second
            with _lock:
                self.bars.refresh()

    def print(self, renderable) -> None:
        with _lock:
            self.console.print(renderable, soft_wrap=True)
            self.bars.refresh()

    def drawn(self, stage: _Stage | None = None) -> None:
        if stage is not None:
            retried = f" (attempt {stage.attempt})" if stage.attempt > 1 else ""
            self.bars.update(stage.bar, description=f"  {stage.label}{retried}", total=None, completed=0, what="")
            return
        done = self.total is not None and self.finished_count >= self.total
        style = "bold red" if self.failed else "bold green" if done else "bold"
        self.bars.update(self.overall, total=self.total, completed=self.finished_count, what=self.count(),
                         description=f"[{style}]stages", over=done)
        self.bars.refresh()

    def added(self, stage: _Stage) -> None:
        stage.bar = self.bars.add_task(f"  {stage.label}", total=None, what="", over=False)
        self.bars.refresh()

    def progressed(self, stage: _Stage) -> None:
        self.bars.update(stage.bar, total=stage.total, completed=stage.done, what=stage.what())

    def removed(self, stage: _Stage, outcome: str, seconds: float) -> None:
        from rich.text import Text

        self.bars.remove_task(stage.bar)
        self.bars.refresh()
        mark, style = {"cached": ("✓", "dim"), "done": ("✓", "green"), "failed": ("✗", "bold red")}[outcome]
        self.print(Text(f"{mark} [{self.count()}] {self.line(stage, outcome, seconds)}", style=style))
        self.drawn()


class _Above(io.TextIOBase):
    """A text stream whose lines are printed above the live display."""

    def __init__(self, view: _LiveView):
        self.view = view
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        from rich.text import Text

        with _lock:
            *lines, self.pending = (self.pending + text).split("\n")
            for line in lines:
                self.view.print(Text(line))
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:  # for whatever hands the stream to a subprocess
        return self.view.console.file.fileno()


class _ConsoleLogs(logging.Handler):
    """Stands in for Prefect's console handler while the live display runs: the same lines,
    printed through the display's console (above the display, not through it)."""

    def __init__(self, view: _LiveView, original: logging.Handler):
        super().__init__(original.level)
        self.view = view
        self.setFormatter(original.formatter)
        for each in original.filters:
            self.addFilter(each)

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        try:
            style = "bold red" if record.levelno >= logging.ERROR else "yellow" if record.levelno >= logging.WARNING \
                else "dim"
            self.view.print(Text(self.format(record), style=style))
        except Exception:
            self.handleError(record)


@contextmanager
def _console_logs(view: _LiveView | None = None) -> Iterator[None]:
    """Prefect's console log lines without the ones the view replaces; with a live view,
    printed through it."""
    from prefect.logging.handlers import PrefectConsoleHandler

    root = logging.getLogger()
    replaced = _Replaced()
    swapped = []
    for original in [h for h in root.handlers if isinstance(h, PrefectConsoleHandler)]:
        replacement = original if view is None else _ConsoleLogs(view, original)
        replacement.addFilter(replaced)
        root.removeHandler(original)
        root.addHandler(replacement)
        swapped.append((original, replacement))
    try:
        yield
    finally:
        for original, replacement in swapped:
            replacement.removeFilter(replaced)
            root.removeHandler(replacement)
            root.addHandler(original)


@contextmanager
def watch(stream=None) -> Iterator[_View]:
    """Show the render's progress on `stream` (stderr) while the block runs. FACELESS_LIVE=0
    asks for plain lines on a terminal too."""
    global _view
    from rich.console import Console

    stream = stream or sys.stderr
    console = Console(file=stream)
    live = console.is_terminal and not console.is_dumb_terminal and os.environ.get("FACELESS_LIVE", "1") != "0"
    if live:
        view: _View = _LiveView(console)
    else:
        view = _PlainView(stream, float(os.environ.get("FACELESS_PROGRESS_EVERY_S", "15")))
    quiet = _QuietHooks()
    engine_logger = logging.getLogger("prefect.task_runs")
    engine_logger.addFilter(quiet)
    _view = view
    try:
        with _console_logs(view if live else None):
            if live:
                with view:
                    yield view
            else:
                yield view
    finally:
        _view = None
        engine_logger.removeFilter(quiet)
