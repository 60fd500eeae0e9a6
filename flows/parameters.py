"""Run parameters as the Prefect UI's run form shows them.

The form draws a parameter from its JSON schema: a plain `str` is a text box ready to type in,
while `str | None` is a `str`/`None` toggle that starts on None (no text box until it is
switched), so optional text parameters are `str = ""`, and empty means not given. A `Literal`
is a drop-down. Descriptions under each field come from the flow docstring's `Args:` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from faceless.tasks.settings import available

# The installed profiles (tasks/profiles/*.yaml), a drop-down in the run form; a profile file of
# your own goes in the separate `profile_file` parameter.
ProfileName = Literal[tuple(available())]  # type: ignore[valid-type]


def flow_parameters(parameters: dict) -> dict:
    """Parameters of a story-to-video run made before the form-friendly signature (None for
    not given, a .yaml path in `profile`) in today's form, so `faceless resume` and the
    resume-crashed automation can start them again."""
    fixed = {name: value for name, value in parameters.items() if value is not None}
    profile = fixed.get("profile")
    if isinstance(profile, str) and profile.endswith((".yaml", ".yml")):
        fixed["profile_file"] = str(Path(profile).expanduser())
        del fixed["profile"]
    return fixed
