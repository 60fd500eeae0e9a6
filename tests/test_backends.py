"""The backend registry: every backend a profile can name is one module behind one interface."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from faceless.tasks import profile_schema
from faceless.tasks.backends import base
from faceless.tasks.runtime import memory_plan

ROOT = Path(__file__).resolve().parent.parent
# Backends whose every trace in the code is their own module and their registry line. The rest
# are still named by older code (stages, the preflight, the tiny twins built in tasks/models/).
SELF_CONTAINED = ("ltx", "shot-writer")


def _schema_backends() -> set[str]:
    """The `backend` values the profile schema accepts, from its stage sections' unions."""
    found = set()
    for field in profile_schema.Profile.model_fields.values():
        annotation = field.annotation
        members = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
        for member in members:
            member = typing.get_args(member)[0] if typing.get_origin(member) is typing.Annotated else member
            backend = getattr(member, "model_fields", {}).get("backend")
            if backend is not None:
                found.update(a for a in typing.get_args(backend.annotation) if isinstance(a, str))
    return found


def test_every_backend_implements_the_interface():
    for name in base.REGISTRY:
        module = base.get(name)
        assert isinstance(module, base.Backend) and module.NAME == name
        assert module.STAGE in ("storyboard", "narrate", "align", "keyframe", "animate")
        if module.STAGE in ("keyframe", "animate"):
            assert module.SIZE_MULTIPLE in (8, 16, 32)


def test_the_registry_covers_what_profiles_and_the_memory_table_name():
    assert (_schema_backends() - {"voice"}) <= set(base.REGISTRY)  # `voice`: the narration's own times
    assert set(memory_plan.table()) <= set(base.REGISTRY)


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        base.get("dalle")


def test_the_schema_takes_each_section_from_its_backend():
    for name in base.REGISTRY:
        module = base.get(name)
        assert module.SETTINGS.__module__ == module.__name__
    assert _schema_backends() - {"voice"} == set(base.REGISTRY) - {"shot-writer"}  # the writer: `writer: llm`


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_a_backend_is_named_only_in_its_module_and_the_registry(name):
    """Adding a backend is one module and its registry line (issue 19): nothing else in the
    code names it, as a word or by its module."""
    module = base.get(name)
    own = Path(module.__file__).resolve()
    word = re.compile(rf"\b{re.escape(name)}\b|\b{re.escape(own.stem)}\b", re.IGNORECASE)
    registry = Path(base.__file__).resolve()
    named = []
    for folder in ("tasks", "flows", "deployments", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.resolve() in (own, registry):
                continue
            named += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if word.search(line)]
    assert not named, f"{name} is named outside {own.name} and the registry: {named}"


def test_the_run_summary_tells_each_backends_motion():
    from faceless.flows.report import _motion

    assert _motion({"windows": 2, "fps_conditioning": 4}, "svd", 24) == "2 SVD windows at fps 4"
    assert _motion({"windows": 1, "fps_conditioning": 6}, "svd", 24) == "1 SVD window at fps 6"
    assert _motion({}, "ltx", 24) == "one LTX-Video pass at 24 fps"
    assert _motion({}, "wan", 12) == "one Wan 2.2 pass at 12 fps"
