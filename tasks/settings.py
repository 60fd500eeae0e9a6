"""Profiles: named YAML files of stage settings under tasks/profiles/."""

from __future__ import annotations

from pathlib import Path

import yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
STAGES = ("plan", "narrate", "keyframe", "animate", "compose")  # each needs a section (align is optional)

# What a backend uses when the profile does not say (the studio's models).
DEFAULTS = {
    ("narrate", "bark"): {"model": "hf:suno/bark-small", "voice_preset": "v2/en_speaker_6"},
    ("align", "faster-whisper"): {"model": "hf:Systran/faster-whisper-large-v3", "language": "en"},
}


class ProfileError(ValueError):
    """A profile that does not exist or cannot be used."""


def available() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def parse_size(size: str) -> tuple[int, int]:
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ProfileError(f"size {size!r} is not WIDTHxHEIGHT, e.g. 720x1280")
    return int(parts[0]), int(parts[1])


def _same_area(width: int, height: int, aspect: float) -> tuple[int, int]:
    # Generate the pictures in the output's shape at the profile's cost (pixel count), so a
    # 16:9 video gets landscape keyframes instead of a crop of portrait ones.
    area = width * height
    new_width = max(64, round((area * aspect) ** 0.5 / 8) * 8)
    new_height = max(64, round(new_width / aspect / 8) * 8)
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
                settings["width"], settings["height"] = _same_area(settings["width"], settings["height"], aspect)
    return profile


def load_profile(name: str, size: str | None = None) -> dict:
    """The profile's settings by stage, from a name under tasks/profiles/ or a path to a
    YAML file of your own. Raises ProfileError with a one-line reason."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
    else:
        path = PROFILES_DIR / f"{name}.yaml"
        if not name or not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
            raise ProfileError(f"unknown profile {name!r} (available: {', '.join(available())}, or a .yaml path)")
    try:
        profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ProfileError(f"profile {name!r} is not valid YAML{line}: {getattr(error, 'problem', None) or error}") from None
    if not isinstance(profile, dict):
        raise ProfileError(f"profile {name!r} must be a mapping of stage settings")
    missing = [stage for stage in STAGES if not isinstance(profile.get(stage), dict)]
    if missing:
        raise ProfileError(f"profile {name!r} lacks settings for: {', '.join(missing)}")
    # align is optional: without it the subtitles are timed by the voice's own word times.
    profile.setdefault("align", {"backend": "voice"})
    if not isinstance(profile["align"], dict):
        raise ProfileError(f"profile {name!r}: align must be a mapping of settings")
    for (stage, backend), defaults in DEFAULTS.items():
        if profile[stage].get("backend") == backend:
            profile[stage] = {**defaults, **profile[stage]}
    if size:
        apply_size(profile, size)
    _check_sizes(name, profile)
    profile["name"] = profile.get("name") or path.stem
    return profile


def _check_sizes(name: str, profile: dict) -> None:
    # Both diffusion models work on 8x-downsampled latents; x264 with yuv420p needs even sizes.
    for stage, multiple in (("keyframe", 8), ("animate", 8), ("compose", 2)):
        settings = profile[stage]
        width, height = settings.get("width"), settings.get("height")
        for label, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or not 16 <= value <= 4096 or value % multiple:
                raise ProfileError(
                    f"profile {name!r}: {stage}.{label}={value!r} must be an integer "
                    f"from 16 to 4096 and a multiple of {multiple}"
                )
