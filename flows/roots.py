"""Where a shared server's runs may read and write: `FACELESS_ROOTS`, the one place that checks.

A deployment run takes `story_file`, `stories`, `music`, `out` and `profile_file` from whoever
starts it, and a profile names model folders and font files; the worker reads and writes them
with its own rights. On a server shared by several people, set `FACELESS_ROOTS` in each worker's
own environment (where `prefect worker start` runs) to the folders and `s3://bucket/prefix`
locations runs may use, separated by ":". Every location is first put in one normal form
(`normal`: `S3://b/x`, `s3:/b/x` and `s3:///b/x` are all `s3://b/x`; a path is made absolute
with `..` and symbolic links resolved), then compared with the roots in the same form, so no
spelling leads out. Anything outside is refused before any work, in one line. Unset (a single
user's machine), every location is allowed.

The roots are the worker's: a run cannot widen them. A process worker hands a run's job
variable `env` to the run's process, so a run whose job variables set `FACELESS_ROOTS` or any
other variable that decides what the worker trusts (`SECURITY_VARIABLES`) is refused in one
line naming it, before any stage runs (`refuse_job_variables`, called by the flows).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable


class OutsideRootsError(ValueError):
    """A location parameter outside the folders this worker serves."""


class JobVariableError(ValueError):
    """A run's job variables that try to change what the worker trusts."""


# Set only by the worker's own start-up, never by a run's job variables: where runs may read
# and write, where artifacts, records and models live, who the server and bucket are, and what
# the Python process loads before any of our checks can run.
SECURITY_VARIABLES = frozenset({
    "FACELESS_ROOTS", "FACELESS_HOME", "FACELESS_SCRATCH", "FACELESS_WORKER_NAME", "FACELESS_GPU_LIMIT",
    "HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HOME", "PATH", "PYTHONPATH", "PYTHONHOME",
    "PYTHONSTARTUP", "PYTHONUSERBASE", "LD_PRELOAD", "LD_LIBRARY_PATH",
    "PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_HOME", "PREFECT_PROFILES_PATH",
    "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_RESULTS_DEFAULT_SERIALIZER", "PREFECT_RESULTS_PERSIST_BY_DEFAULT",
    "PREFECT_DEFAULT_RESULT_STORAGE_BLOCK",
})
SECURITY_PREFIXES = ("AWS_",)
# Job variables that change what the run's process is, not only its environment.
LOCKED_JOB_VARIABLES = ("command", "working_dir")

_S3 = re.compile(r"s3:/+", re.I)


def normal(location: str | Path) -> str:
    """The one spelling of a location: `s3://bucket/key` (scheme lower case, one `//`, no
    trailing `/`), or an absolute local path with `~`, `..` and symbolic links resolved."""
    text = str(location).strip()
    match = _S3.match(text)
    if match:
        rest = re.sub(r"/+", "/", text[match.end():]).strip("/")
        return "s3://" + rest
    return str(Path(text).expanduser().resolve())


def configured(environ: dict | None = None) -> list[str]:
    """The worker's roots in normal form. Split at ":" but not at the one of "s3://"."""
    value = (os.environ if environ is None else environ).get("FACELESS_ROOTS", "")
    return [normal(root) for root in re.split(r"(?<!^s3)(?<!:s3)(?<!^S3)(?<!:S3):", value) if root.strip()]


def _inside(target: str, root: str) -> bool:
    if target.startswith("s3://") != root.startswith("s3://"):
        return False
    if target.startswith("s3://"):
        return target == root or target.startswith(root.rstrip("/") + "/")
    return target == root or Path(root) in Path(target).parents


def check(parameter: str, value: str | Path | None) -> str:
    """`value` (the parameter `parameter`) in normal form; OutsideRootsError when
    FACELESS_ROOTS is set and it is outside them. None or "" is a parameter not given."""
    if value is None or str(value) == "":
        return ""
    target = normal(value)
    roots = configured()
    # An S3 key is taken literally, but an HTTP client or server may not: no . or .. parts.
    dotted = target.startswith("s3://") and any(part in (".", "..") for part in target.split("/")[2:])
    if not roots or (not dotted and any(_inside(target, root) for root in roots)):
        return target
    raise OutsideRootsError(f"{parameter} {str(value)!r} is outside the folders this worker serves "
                            f"(FACELESS_ROOTS={os.environ.get('FACELESS_ROOTS', '')})")


def check_all(parameter: str, values: Iterable[str | Path]) -> list[str]:
    return [check(parameter, value) for value in values]


def _is_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.startswith(("~", "."))


def profile_locations(settings: dict) -> list[tuple[str, str]]:
    """(setting, location) of every file or folder a resolved profile names: model folders
    (not `tiny:` or `hf:` specs), font files given as paths, a Bark voice preset file."""
    from faceless.tasks.models.specs import profile_models

    found = [(setting, spec) for setting, spec, _ in profile_models(settings)
             if not spec.startswith(("tiny:", "hf:"))]
    fonts = settings.get("compose", {}).get("captions", {}).get("fonts", [])
    found += [("compose.captions.fonts", font) for font in fonts if _is_path(font)]
    narrate = settings.get("narrate", {})
    if str(narrate.get("voice_preset", "")).endswith(".npz"):
        found.append(("narrate.voice_preset", narrate["voice_preset"]))
    return found


def check_profile(settings: dict) -> None:
    """Every location a profile names, against the roots (and a Kokoro voice is a plain name:
    it is a file inside the model folder)."""
    narrate = settings.get("narrate", {})
    if narrate.get("backend") == "kokoro" and not re.fullmatch(r"[A-Za-z0-9_-]+", str(narrate.get("voice", ""))):
        raise OutsideRootsError(f"profile's narrate.voice {narrate.get('voice')!r} must be a voice name, not a path")
    for setting, location in profile_locations(settings):
        check(f"profile_file's {setting}", location)


def security_variable(name: str) -> bool:
    return name in SECURITY_VARIABLES or name.startswith(SECURITY_PREFIXES)


def current_job_variables() -> dict:
    """The job variables of the flow run this process runs, {} outside a deployment run."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = getattr(context, "flow_run", None)
    return dict(getattr(run, "job_variables", None) or {})


def refuse_job_variables(job_variables: dict[str, Any] | None = None) -> None:
    """Refuse, in one line naming it, a job variable that would change what the worker trusts:
    env setting a SECURITY_VARIABLES name (FACELESS_ROOTS among them), or command/working_dir."""
    variables = current_job_variables() if job_variables is None else job_variables
    for name in LOCKED_JOB_VARIABLES:
        if variables.get(name) not in (None, ""):
            raise JobVariableError(f"job variable {name} is refused: only the worker decides what a run executes")
    env = variables.get("env") or {}
    if not isinstance(env, dict):
        raise JobVariableError("job variable env must be a mapping of names to values")
    for name in sorted(env):
        if security_variable(str(name)):
            raise JobVariableError(f"job variable env sets {name}, which only the worker's own start-up may set; "
                                   f"start the run without it")
