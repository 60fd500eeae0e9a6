"""`faceless render STORY_FILE [--profile NAME] [--out DIR]`: run the story-to-video flow.

Inputs are checked before Prefect starts, so a bad story, profile or missing model is one
line on stderr in well under a second. The last line printed on stdout is the video's path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Quiet Prefect's phoning home (there is no network) before it is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceless", description="Turn a written story into a short video.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render a story file into <out>/<story>/video.mp4")
    render.add_argument("story_file", help="UTF-8 text file with the story")
    render.add_argument("--profile", default="offline", help="settings profile (default: offline)")
    render.add_argument("--out", default="./out", help="output folder (default: ./out)")
    return parser


def _check_inputs(story_file: str, profile_name: str) -> None:
    from flows.story_to_video import model_identities
    from tasks.plan import normalise_story, read_story_file
    from tasks.profiles import load_profile

    normalise_story(read_story_file(story_file))
    model_identities(load_profile(profile_name))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tasks.models import ModelMissingError
    from tasks.plan import StoryError
    from tasks.profiles import ProfileError

    expected = (StoryError, ProfileError, ModelMissingError, FileNotFoundError, ValueError)
    try:
        _check_inputs(args.story_file, args.profile)
    except expected as error:
        print(f"faceless: error: {error}", file=sys.stderr)
        return 2

    from flows.story_to_video import story_to_video

    try:
        video = story_to_video(story_file=str(Path(args.story_file)), profile=args.profile, out=args.out)
    except KeyboardInterrupt:
        print("faceless: interrupted; run the same command again to resume from the finished stages",
              file=sys.stderr)
        return 130
    except Exception as error:  # the flow's own logs above carry the details
        print(f"faceless: error: {type(error).__name__}: {error}; "
              f"run the same command again to resume from the finished stages", file=sys.stderr)
        return 1
    print(video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
