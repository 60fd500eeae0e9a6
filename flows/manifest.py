"""What a render writes down about itself: one record per stage run, and manifest.json."""

from __future__ import annotations

import time
from pathlib import Path

from prefect.runtime import flow_run

from faceless.tasks import models
from faceless.tasks.runtime import store
from faceless.tasks.stages.cast import shot_references
from faceless.tasks.stages.results import (AlignmentResult, CastResult, ClipResult, MusicResult, NarrationResult, PlanResult,
                                           StageResult, Storyboard, VideoResult)
from faceless.tasks.stages.timeline import Timeline


def backends(profile: dict) -> dict:
    """The backend of each stage, by the names profiles use (e.g. "animate": "wan")."""
    return {stage: profile[stage]["backend"] for stage in ("narrate", "align", "keyframe", "animate")}


class StageLedger:
    """The stage runs of one render, in order: whether each was cached, its seconds, attempts
    and degradations. Started with the flow, so model loads and seconds are this run's own."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.loads_before = dict(models.LOADS)
        self.stages: list[dict] = []

    def record(self, stage: str, run, scene: int | None = None) -> StageResult:
        """The result of a finished task (a future or a state), noted in the ledger."""
        if hasattr(run, "wait"):
            run.wait()
            run = run.state
        result = run.result()
        ref = result.ref
        cached = run.name == "Cached" or ref.cached
        self.stages.append({
            "stage": stage,
            "scene": scene,
            "key": ref.key,
            "cached": cached,
            "seconds": 0.0 if cached else ref.seconds,
            "attempts": ref.attempts,
            "degraded": ref.degraded,
            # Where the stage's models sat on the GPU and the predicted peak (GiB), for GPU stages.
            "placement": (ref.meta or {}).get("placement"),
            # The backend that made it, where a stage's backend varies: the narration's (by the
            # story's language), a keyframe's (modern: klein for a shot showing cast members).
            **({"backend": ref.meta["backend"]} if "backend" in (ref.meta or {}) else {}),
        })
        return result

    def model_loads(self) -> dict:
        return {family: count - self.loads_before.get(family, 0) for family, count in models.LOADS.items()
                if count > self.loads_before.get(family, 0)}

    def summary(self) -> str:
        computed = [f"{r['stage']}{'' if r['scene'] is None else '[' + str(r['scene']) + ']'} {r['seconds']:.1f}s"
                    for r in self.stages if not r["cached"]]
        return (f"computed: {', '.join(computed) or 'nothing'}; "
                f"cached: {sum(r['cached'] for r in self.stages)} of {len(self.stages)} stages")


def scene_rows(board: Storyboard, timeline: Timeline, clips: list[ClipResult], fps: int,
               cast: dict[str, CastResult] | None = None) -> list[dict]:
    """One row per shot: the storyboard's fields, where it lands in the video, how it moves, and
    the cast members whose references conditioned its keyframe."""
    bounds = timeline.bounds
    return [
        {**shot.model_dump(mode="json"), "start": bounds[i] / fps, "frames": bounds[i + 1] - bounds[i],
         "references": [reference.name for reference in shot_references(shot.cast, cast or {})],
         "clip_frames": timeline.clip_frames[i],
         **{k: clips[i].meta[k] for k in ("windows", "fps_conditioning", "interpolation")},
         # How the denoiser stepped (None from a clip cached before they were recorded).
         **{k: clips[i].meta.get(k) for k in ("num_inference_steps", "sampler")}}
        for i, shot in enumerate(board.shots)
    ]


def build_manifest(*, ledger: StageLedger, plan: PlanResult, profile: str, settings: dict, identities: dict,
                   board: Storyboard, timeline: Timeline, narration: NarrationResult, alignment: AlignmentResult,
                   clips: list[ClipResult], video: VideoResult, music: str | None,
                   music_ref: MusicResult | None, cast: dict[str, CastResult] | None = None) -> dict:
    return {
        "story": {"title": plan.title, "slug": plan.slug, "sentences": len(plan.sentences),
                  "words": plan.word_count, "language": plan.language,
                  "language_source": plan.language_source},
        "profile": profile,
        "settings": settings,
        "models": identities,
        "backends": backends(settings),
        "model_loads": ledger.model_loads(),
        "seeds": board.seeds,
        "scenes": scene_rows(board, timeline, clips, settings["compose"]["fps"], cast),
        # Each member's reference picture: drawn from the description, or the user's, by its hash.
        "cast": {name: reference.summary() for name, reference in (cast or {}).items()},
        "narration": {"duration": narration.duration, **narration.meta},
        "subtitles": alignment.meta,
        "video": video.meta,
        "music": music_ref and {"file": Path(music).name, **music_ref.meta},
        "stages": ledger.stages,
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "rendered_by": store.rendered_by(),
        "seconds": round(time.perf_counter() - ledger.started, 3),
    }
