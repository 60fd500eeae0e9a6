"""Where a shared server's runs may read and write: `FACELESS_ROOTS`.

A deployment run takes `story_file`, `music` and `out` from whoever starts it, and the worker
reads and writes them with its own rights. On a server shared by several people, set
`FACELESS_ROOTS` on each worker to the folders (or `s3://bucket/prefix` locations) runs may
use, separated by ":": any of the three outside them is refused before any work,
in one line. Paths are compared after resolving `..` and symbolic links, so neither leads out.
Unset (a single user's machine), every path is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


class OutsideRootsError(ValueError):
    """A path parameter outside the folders this worker serves."""


def configured() -> list[str]:
    # Split at ":" but not at the one of "s3://".
    return [root for root in re.split(r":(?!//)", os.environ.get("FACELESS_ROOTS", "")) if root.strip()]


def check(parameter: str, value: str | Path | None) -> None:
    """Refuse `value` (the parameter `parameter`) when FACELESS_ROOTS is set and it is outside.
    None or an empty string is a parameter not given."""
    roots = configured()
    if not value or not roots:
        return
    text = str(value)
    if text.startswith("s3://"):
        target = text.rstrip("/") + "/"
        if any(target.startswith(root.rstrip("/") + "/") for root in roots if root.startswith("s3://")):
            return
    else:
        path = Path(text).expanduser().resolve()
        for root in roots:
            if root.startswith("s3://"):
                continue
            base = Path(root).expanduser().resolve()
            if path == base or base in path.parents:
                return
    raise OutsideRootsError(f"{parameter} {text!r} is outside the folders this worker serves "
                            f"(FACELESS_ROOTS={os.environ['FACELESS_ROOTS']})")
