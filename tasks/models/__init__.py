"""Where models come from, and loading them once per process: the one public entry point.

- specs.py: a profile's model specs (``tiny:``, ``hf:``, a folder), the missing-weights check
  and the identity that enters cache keys;
- tiny.py, tiny_voice.py: tiny random-weight twins built through the real pipeline classes;
- registry.py: the loaded-model registry, whose turn it is to run a model, device and thread choice;
- loaders.py: one loader per family.
"""

from faceless.tasks.models.loaders import bark, flux, kokoro, ltx, sdxl_ensemble, shot_writer, svd, wan, whisper
from faceless.tasks.models.registry import LOADS, MODEL_LOCK, cpu_threads, device_and_dtype, model_turn, release
from faceless.tasks.models.specs import ModelMissingError, identity, profile_models, require, resolve
from faceless.tasks.models.tiny import ensure_tiny

__all__ = [
    "LOADS", "MODEL_LOCK", "ModelMissingError", "bark", "flux", "kokoro", "cpu_threads", "device_and_dtype", "ensure_tiny",
    "identity", "ltx", "model_turn", "profile_models", "release", "require", "resolve", "sdxl_ensemble", "shot_writer",
    "svd", "wan",
    "whisper",
]
