"""The `faceless` command.

    faceless render STORY_FILE [--profile NAME|FILE.yaml] [--out DIR] [--size WxH] [--music FILE] [--voice VOICE]
                   [--redo-degraded] [--review | --review-edits FILE]
    faceless resume FLOW_RUN_ID
    faceless profile show NAME|FILE.yaml [--size WxH]
    faceless gpu-plan PROFILE [--gpu-memory GIB] [--size WxH] [--json]

Inputs are checked before Prefect starts, so a bad story, profile, folder or missing model
is one line on stderr in well under a second. The last line on stdout is the video's path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Quiet Prefect's phoning home (there is no network) before it is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Without PREFECT_API_URL a render starts a temporary server, which Prefect gives 20 s to come
# up; on a busy machine (load 9 on 2 cores) it took longer and the render died before any work.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceless", description="Turn a written story into a short video.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render a story file into <out>/<story>/video.mp4")
    render.add_argument("story_file", help="UTF-8 text file with the story")
    render.add_argument("--profile", default="offline", help="profile name or a .yaml file (default: offline)")
    render.add_argument("--out", default="./out", help="output folder (default: ./out)")
    render.add_argument("--size", help="output WIDTHxHEIGHT: 720x1280 (the profile's default), 1080x1920, "
                                       "1920x1080, 1080x1080, ...")
    render.add_argument("--music", help="background music (any audio file), looped and ducked under the voice")
    render.add_argument("--voice", help="the voice that reads the story, whatever its language: one of the "
                                        "profile's narrate backend (e.g. ef_dora) or espeak:LANGUAGE")
    render.add_argument("--redo-degraded", action="store_true",
                        help="make again at full settings the shots an earlier render made down the degrade ladder")
    render.add_argument("--review", action="store_true",
                        help="stop after the storyboard and its keyframes and print them, for review before animation")
    render.add_argument("--review-edits", metavar="FILE",
                        help="apply these shot edits (YAML, docs/storyboard-review.md; empty approves) and go on")
    resume = commands.add_parser("resume", help="run a failed or killed render again with its parameters")
    resume.add_argument("flow_run_id", help="the story-to-video flow run to resume")
    profile = commands.add_parser("profile", help="look at profiles").add_subparsers(dest="action", required=True)
    show = profile.add_parser("show", help="print a profile resolved, every setting with its default, as a "
                                           "profile file (renders the same with --profile)")
    show.add_argument("name", help="profile name or a .yaml file")
    show.add_argument("--size", help="resolved for this output WIDTHxHEIGHT")
    plan = commands.add_parser("gpu-plan", help="where each GPU stage's models would live on a GPU, and the "
                                                 "predicted peak memory (exit 3 if a stage cannot fit)")
    plan.add_argument("profile", help="profile name or a .yaml file")
    plan.add_argument("--gpu-memory", type=float, metavar="GIB",
                      help="the GPU's memory in GiB (default: this machine's free GPU memory)")
    plan.add_argument("--size", help="plan for this output WIDTHxHEIGHT")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def _gpu_plan(name: str, gpu_memory: float | None, size: str | None, as_json: bool) -> int:
    """Exit 0 if every GPU stage fits, 3 if one cannot (one line on stderr: the least memory
    that fits), 2 on a bad profile or when there is neither a GPU nor --gpu-memory."""
    import json

    from faceless.tasks.runtime import memory_plan
    from faceless.tasks.settings import ProfileError, load_profile

    try:
        settings = load_profile(name, size)
    except ProfileError as error:
        print(f"faceless: error: {error}", file=sys.stderr)
        return 2
    if gpu_memory is None:
        gpu_memory = memory_plan.local_gpu_gib()
        if gpu_memory is None:
            print("faceless: error: no CUDA GPU here; say how much memory the GPU has: --gpu-memory GIB",
                  file=sys.stderr)
            return 2
    if gpu_memory <= 0:
        print("faceless: error: --gpu-memory must be positive", file=sys.stderr)
        return 2
    plan = memory_plan.make_plan(settings, gpu_memory, Path(name).stem)
    if as_json:
        print(json.dumps(plan.as_dict(), indent=2))
    else:
        print(f"{plan.profile} on {gpu_memory:g} GiB (predicted peaks; {memory_plan.RESERVE_GIB:g} GiB kept "
              f"for the CUDA context):")
        for stage in plan.stages:
            print(f"  {stage.stage:10s} {stage.backend:15s} {stage.placement:20s} {stage.predicted_peak_gib:6.2f} GiB"
                  f"{'' if stage.fits else '  does not fit'}")
    if not plan.fits:
        print(f"faceless: {plan.needs_line()}", file=sys.stderr)
        return 3
    return 0


def _show_profile(name: str, size: str | None) -> int:
    from faceless.tasks.settings import ProfileError, load_profile, profile_yaml

    try:
        text = profile_yaml(load_profile(name, size))
    except ProfileError as error:
        print(f"faceless: error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _run_parameters(flow_run_id: str) -> dict:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise ValueError(f"{flow_run_id!r} is not a flow run id") from None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except Exception as error:
            if _unauthorized(error):
                raise
            raise ValueError(f"no flow run {flow_run_id} on the Prefect server in use") from None
        flow = client.read_flow(run.flow_id)
    if flow.name != "story-to-video":
        raise ValueError(f"flow run {flow_run_id} is a {flow.name!r} run, not story-to-video")
    from faceless.flows.parameters import flow_parameters

    return flow_parameters(dict(run.parameters))


def _render(parameters: dict) -> int:
    from faceless.flows.story_to_video import story_to_video
    from faceless.tasks.runtime import live

    try:
        with live.watch():  # stages and progress on stderr: a live display on a terminal, else lines
            state = story_to_video(**parameters, return_state=True)
    except KeyboardInterrupt:
        print("faceless: interrupted; run the same command again to resume from the finished stages",
              file=sys.stderr)
        return 130
    if state.is_completed():
        print(state.result())
        if parameters.get("review") and not parameters.get("review_edits"):  # the storyboard, not a video
            print("faceless: the storyboard above waits for review: write the shots' changes to a file "
                  "(docs/storyboard-review.md) and run the same command with --review-edits FILE "
                  "(an empty file approves); unchanged shots come back cached", file=sys.stderr)
        return 0
    run_id = state.state_details.flow_run_id
    try:
        state.result()
        error: BaseException = RuntimeError(f"the flow run ended {state.name}")
    except BaseException as raised:  # the flow's own logs above carry the details
        error = raised
    import torch  # only now: a cached render never needs to import it

    if isinstance(error, torch.OutOfMemoryError):  # its message already says how to resume
        print(f"faceless: error: {error}", file=sys.stderr)
    else:
        print(f"faceless: error: {type(error).__name__}: {error}; to resume from the finished stages, "
              f"run the same command again or `faceless resume {run_id}`", file=sys.stderr)
    return 1


def _unauthorized(error: BaseException | None) -> bool:
    """True when the error (or one it came from) is the Prefect server's 401."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if getattr(response, "status_code", None) == 401:
            return True
        error = error.__cause__ or error.__context__
    return False


def _refused_line() -> str:
    url = os.environ.get("PREFECT_API_URL") or "the Prefect server"
    given = "a different one" if os.environ.get("PREFECT_API_AUTH_STRING") else "none"
    return (f"faceless: error: {url} answered 401 Unauthorized: it wants its auth string, and this shell "
            f"gives {given}; set PREFECT_API_AUTH_STRING (`make cluster` prints it among its export lines)")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except Exception as error:
        if not _unauthorized(error):
            raise
        print(_refused_line(), file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "profile":
        return _show_profile(args.name, args.size)
    if args.command == "gpu-plan":
        return _gpu_plan(args.profile, args.gpu_memory, args.size, args.json)
    from faceless.flows.preflight import preflight
    from faceless.tasks.models import ModelMissingError

    expected = (ValueError, ModelMissingError, FileNotFoundError)  # StoryError, ProfileError, ... are ValueErrors
    try:
        if args.command == "resume":
            parameters = _run_parameters(args.flow_run_id)
        else:
            parameters = {
                "story_file": str(Path(args.story_file).expanduser().absolute()),
                "out": args.out,
            }
            # The flow takes an installed profile by name and a file of your own apart.
            if args.profile.endswith((".yaml", ".yml")):
                parameters["profile_file"] = args.profile
            else:
                parameters["profile"] = args.profile
            if args.size:
                parameters["size"] = args.size
            if args.music:
                parameters["music"] = str(Path(args.music).expanduser().absolute())
            if args.voice:
                parameters["voice"] = args.voice
            if args.redo_degraded:
                parameters["redo_degraded"] = True
            if args.review or args.review_edits:
                parameters["review"] = True
            if args.review_edits:
                parameters["review_edits"] = str(Path(args.review_edits).expanduser().absolute())
        preflight(**{name: value for name, value in parameters.items() if name != "redo_degraded"})
    except expected as error:
        print(f"faceless: error: {error}", file=sys.stderr)
        return 2
    if args.command == "render":
        # Absolute paths, so `faceless resume` works from any folder.
        from faceless.flows.deliver import output_folder

        parameters["out"] = str(output_folder(args.out))
        if "profile_file" in parameters:
            parameters["profile_file"] = str(Path(args.profile).expanduser().absolute())
    return _render(parameters)


if __name__ == "__main__":
    sys.exit(main())
