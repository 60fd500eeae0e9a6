"""Music: the user's music file copied into the artifact store, keyed by its content, so
compose's cache key depends on the music's bytes, not on where the file was.

The mixing itself (looping, ducking under the voice) is compose's, in tasks/media/music.py.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from faceless.tasks.media.music import check_music
from faceless.tasks.runtime import store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage
from faceless.tasks.stages.results import MusicResult

STAGE_VERSION = 1


@dataclass
class MusicPolicy(ArtifactPolicy):
    """The key of the file's content, wherever the file is: the same bytes under another name
    or in another folder come back Cached, and a file changed in place is imported again."""

    def content(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"sha256": store.file_sha256(check_music(inputs["path"]))}


def import_music(path: str | Path, directory: Path) -> dict:
    """Copy the music file into `directory`, as music.<its extension>."""
    path = check_music(path)
    # The artifact's file name is ours: only the suffix comes from the user's file, kept safe.
    suffix = path.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,10}", path.suffix.lower()) else ".audio"
    shutil.copyfile(path, directory / f"music{suffix}")
    return {"source": path.name, "sha256": store.file_sha256(directory / f"music{suffix}")}


@task(name="music", cache_policy=MusicPolicy(stage="music", version=STAGE_VERSION))
def music_task(path: str) -> MusicResult:
    return MusicResult.of(run_stage("music", lambda directory: import_music(path, directory)))
