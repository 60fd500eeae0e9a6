"""Progress artifacts: a bar on the run's page that moves while a stage denoises or encodes.

Only a stage that really computes reports progress (a cached one never runs its body).
Outside a Prefect run (a stage's plain function in a test) nothing is reported. Every update
also goes to the terminal's live view when `faceless render` shows one (runtime/live.py).
"""

from __future__ import annotations

import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext

from faceless.tasks.runtime import live

_EVERY_S = 0.5  # an update is one API call: often enough to watch, rarely enough not to slow a stage


class Progress:
    def __init__(self, key: str, description: str, total: int, unit: str = "steps"):
        self.total = max(1, total)
        self.unit = unit
        self.artifact_id = None
        self.run_id = None
        self.last = 0.0
        context = TaskRunContext.get()
        if context is not None:
            self.run_id = context.task_run.id
            self.artifact_id = create_progress_artifact(0.0, key=key, description=description)
            live.progress(self.run_id, 0, self.total, unit)

    def update(self, done: int) -> None:
        live.progress(self.run_id, done, self.total, self.unit)  # in-process: every update
        if self.artifact_id is None:
            return
        now = time.monotonic()
        if done < self.total and now - self.last < _EVERY_S:
            return
        self.last = now
        update_progress_artifact(self.artifact_id, round(100.0 * min(done, self.total) / self.total, 1))

    def step_callback(self):
        """A diffusers `callback_on_step_end` counting steps across the pipelines it is given to
        (SDXL base then refiner, or SVD window after window)."""
        steps = 0

        def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            nonlocal steps
            steps += 1
            self.update(steps)
            return callback_kwargs
        return callback
