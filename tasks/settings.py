"""Profiles: named YAML files of stage settings under tasks/profiles/, or a file of your own,
resolved against the schema (tasks/profile_schema.py) into a plain dict with every setting.

What the stages get is that resolved dict (plain data, so Prefect hashes it into the cache
keys and the manifest records it); `profile_yaml` writes it back as a profile file.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from faceless.tasks.backends import base as backends
from faceless.tasks.profile_schema import Profile

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
STAGES = ("plan", "narrate", "keyframe", "animate", "compose")  # each needs a section (align is optional)


class ProfileError(ValueError):
    """A profile that does not exist or cannot be used."""


def available() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def parse_size(size: str) -> tuple[int, int]:
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ProfileError(f"size {size!r} is not WIDTHxHEIGHT, e.g. 720x1280")
    return int(parts[0]), int(parts[1])


def size_multiple(backend: str) -> int:
    """What a picture or video backend's sides must be multiples of (its module's SIZE_MULTIPLE:
    its VAE's factor times its patch size)."""
    return backends.get(backend).SIZE_MULTIPLE


def _same_area(width: int, height: int, aspect: float, multiple: int = 8) -> tuple[int, int]:
    # Generate the pictures in the output's shape at the profile's cost (pixel count), so a
    # 16:9 video gets landscape keyframes instead of a crop of portrait ones.
    area = width * height
    new_width = max(64, round((area * aspect) ** 0.5 / multiple) * multiple)
    new_height = max(64, round(new_width / aspect / multiple) * multiple)
    return new_width, new_height


def apply_size(profile: dict, size: str) -> dict:
    """The profile for another output size: compose at that size, keyframes and clips in its aspect."""
    width, height = parse_size(size)
    profile["compose"].update(width=width, height=height)
    if width > 0 and height > 0:
        aspect = width / height
        for stage in ("keyframe", "animate"):
            settings = profile[stage]
            if abs(settings["width"] / settings["height"] - aspect) > 0.02 * aspect:
                settings["width"], settings["height"] = _same_area(
                    settings["width"], settings["height"], aspect, size_multiple(settings["backend"]))
    return profile


def profile_path(name: str) -> Path:
    """The file of a profile given by name (under tasks/profiles/) or as a .yaml path."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
        return path
    path = PROFILES_DIR / f"{name}.yaml"
    if not name or not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
        raise ProfileError(f"unknown profile {name!r} (available: {', '.join(available())}, or a .yaml path)")
    return path


def load_profile(name: str, size: str | None = None) -> dict:
    """The resolved profile (every setting, defaults filled in), from a name under
    tasks/profiles/ or a path to a YAML file of your own, for `size` if given.
    Raises ProfileError with a one-line reason."""
    path = profile_path(name)
    label = f"profile {path.name}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ProfileError(f"{label} is not valid YAML{line}: {getattr(error, 'problem', None) or error}") from None
    return resolve(data, label, path.stem, size)


def resolve(data, label: str, default_name: str, size: str | None = None) -> dict:
    """Profile data (as read from YAML) checked against the schema and resolved to a plain
    dict holding every setting. `label` starts each error message."""
    if not isinstance(data, dict):
        raise ProfileError(f"{label} must be a mapping of stage settings")
    missing = [stage for stage in STAGES if stage not in data]
    if missing:  # one line for what is most likely the wrong file, before the details
        raise ProfileError(f"{label} lacks settings for: {', '.join(missing)}")
    try:
        profile = Profile.model_validate(data).model_dump(mode="json")
    except ValidationError as error:
        raise ProfileError(f"{label}: {describe(error)}") from None
    profile["name"] = profile["name"] or default_name
    if size:
        apply_size(profile, size)
    _check_sizes(label, profile)
    return profile


def section(path: str, **values) -> dict:
    """One section resolved on its own, e.g. `section("narrate", backend="piper", voice=...)`
    or `section("compose.music")`: for tests and tools that call a stage without a profile."""
    node = Profile
    for name in path.split("."):
        field = node.model_fields[name]
        # A backend's section is a discriminated union: its Field(discriminator=...) is metadata.
        node = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(node).validate_python(values).model_dump(mode="json")


def profile_yaml(profile: dict) -> str:
    """A resolved profile as a profile file: loading it gives the same settings."""
    head = f"# profile {profile['name']}, resolved: every setting, defaults included (faceless profile show)\n"
    return head + yaml.safe_dump(profile, sort_keys=False, allow_unicode=True, width=110)


def _check_sizes(label: str, profile: dict) -> None:
    # x264 with yuv420p needs even sizes.
    for stage in ("keyframe", "animate", "compose"):
        settings = profile[stage]
        multiple = size_multiple(settings["backend"]) if "backend" in settings else 2
        for key in ("width", "height"):
            value = settings[key]
            if not 16 <= value <= 4096 or value % multiple:
                raise ProfileError(
                    f"{label}: {stage}.{key}={value!r} must be an integer "
                    f"from 16 to 4096 and a multiple of {multiple}"
                )


# -- one line per validation error --------------------------------------------------------------

def describe(error: ValidationError) -> str:
    """The first problem of a failed validation, in one line with the setting's full path;
    an unknown key comes with the nearest valid name. Unknown keys are named first: a
    misspelt required key is also reported missing, and the typo is what explains both."""
    problems = sorted(error.errors(), key=lambda e: _ORDER.get(e["type"], 2 if e["type"] != "missing" else 3))
    first = problems[0]
    path, model = _walk(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        key = path.rpartition(".")[2].partition("[")[0]
        names = list(model.model_fields) if model else []
        near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else f"valid here: {', '.join(names)}"
        line = f"unknown setting {path} ({hint})"
    elif kind == "missing":
        line = f"missing setting {path}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = first.get("ctx", {}).get("expected_tags") or _tags(first["loc"])
        found = first.get("ctx", {}).get("tag")
        line = (f"{path}.backend {found!r} is not one of {tags}" if found is not None
                else f"{path}.backend is missing (one of {tags})")
    else:
        line = f"{path}: {first['msg']} (got {first['input']!r})"
    others = len({_walk(e["loc"])[0] for e in problems}) - 1
    return line + (f" (and {others} more problem{'s' * (others > 1)})" if others > 0 else "")


_ORDER = {"extra_forbidden": 0, "union_tag_invalid": 1, "union_tag_not_found": 1}


def _walk(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """The dotted path of a pydantic error location, without the tags pydantic inserts for a
    discriminated union (`narrate.bark.model` is the setting narrate.model), and the model
    holding the last key (for suggestions)."""
    parts: list[str] = []
    node: typing.Any = Profile
    holder: type[BaseModel] | None = Profile
    for item in loc:
        node = _plain(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            holder = node
            parts.append(str(item))
            field = node.model_fields.get(item) if isinstance(item, str) else None
            node = field.annotation if field else None
        elif typing.get_origin(node) is list and isinstance(item, int):
            parts[-1] += f"[{item}]"
            node = typing.get_args(node)[0]
        elif _is_union(node):  # a tag, or a member type's name
            members = [m for m in typing.get_args(node) if _tag(m) == item]
            node = members[0] if members else None
        else:
            break
    return ".".join(parts), holder


def _plain(annotation):
    # `X | None` and `Annotated[X, ...]` are X for walking purposes.
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _tag(member) -> str | None:
    field = getattr(member, "model_fields", {}).get("backend")
    return typing.get_args(field.annotation)[0] if field else None


def _tags(loc: tuple) -> str:
    field = Profile.model_fields.get(loc[0]) if loc else None
    members = typing.get_args(field.annotation) if field else ()
    return ", ".join(repr(t) for t in map(_tag, members) if t)
