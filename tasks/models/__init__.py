"""Where models come from, and loading them once per process: the one public entry point.

- specs.py: a profile's model specs (``tiny:``, ``hf:``, a folder), the missing-weights check
  and the identity that enters cache keys;
- tiny.py, tiny_voice.py: tiny random-weight twins built through the real pipeline classes
  (and the backends' own, tasks/backends/);
- registry.py: the loaded-model registry, whose turn it is to run a model, device and thread choice.

Each backend loads its own models through the registry (its `load_cached`, tasks/backends/base.py).
"""

from faceless.tasks.models.registry import LOADS, MODEL_LOCK, cpu_threads, device_and_dtype, model_turn, release
from faceless.tasks.models.specs import ModelMissingError, identity, profile_models, require, resolve
from faceless.tasks.models.tiny import ensure_tiny

__all__ = [
    "LOADS", "MODEL_LOCK", "ModelMissingError", "cpu_threads", "device_and_dtype", "ensure_tiny",
    "identity", "model_turn", "profile_models", "release", "require", "resolve",
]
