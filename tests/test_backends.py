"""The backend registry: every backend a profile can name is one module behind one interface."""

from __future__ import annotations

import typing

from faceless.tasks import profile_schema
from faceless.tasks.backends import base
from faceless.tasks.runtime import memory_plan


def _schema_backends() -> set[str]:
    found = set()
    for model in vars(profile_schema).values():
        fields = getattr(model, "model_fields", {})
        if "backend" in fields:
            found.update(a for a in typing.get_args(fields["backend"].annotation) if isinstance(a, str))
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
    import pytest

    with pytest.raises(ValueError, match="unknown backend"):
        base.get("dalle")
