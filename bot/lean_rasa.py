"""Keep TensorFlow out of a Rasa server whose model needs none.

Rasa imports TensorFlow (≈500 MB of RSS, ≈2 s) on its way to
`rasa.core.agent` even when no component of the model uses it: a handful of
Rasa modules import it only to define classes the server never touches.

    rasa.core.agent → core.policies.policy → core.featurizers.tracker_featurizers
    → core.featurizers.single_state_featurizer → nlu.extractors.extractor
    → utils.train_utils → utils.tensorflow.callback / .data_generator → tensorflow

and, while the model loads, the train schema's DefaultV1RecipeValidator imports
DIETClassifier, ResponseSelector and TEDPolicy for isinstance checks.

`install(argv)` runs in the Rasa child before Rasa is imported (bot.cli's
launcher). If the model named by `--model` provably needs no TensorFlow (its
metadata.json lists no TensorFlow component), a meta-path finder serves stand-ins
for exactly those five modules; every other import stays real, TensorFlow
included, should something else want it. The stand-in classes are unrelated
types, so Rasa's isinstance/issubclass checks answer False — true, since no such
object exists in this process — and using one (instantiating, subclassing,
reading an attribute) fails loudly, naming BOT_LEAN_RASA=0, which turns it off.

Anything we cannot read cheaply (no --model, a directory, a remote model,
metadata.json far into a big archive as with TensorFlow weights) keeps the real
imports. `bot train`, `rasa test` and in-process tests never call install().
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import logging
import os
import sys
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

ENV_SWITCH = "BOT_LEAN_RASA"

# Rasa modules that import TensorFlow at import time only to define these
# classes, as far as a server without TensorFlow components is concerned.
STAND_INS: dict[str, tuple[str, ...]] = {
    "rasa.utils.tensorflow.callback": ("RasaTrainingLogger", "RasaModelCheckpoint"),
    "rasa.utils.tensorflow.data_generator": ("RasaDataGenerator", "RasaBatchDataGenerator"),
    "rasa.nlu.classifiers.diet_classifier": ("DIETClassifier",),
    "rasa.nlu.selectors.response_selector": ("ResponseSelector",),
    "rasa.core.policies.ted_policy": ("TEDPolicy",),
}

# Rasa's components that run on TensorFlow: a model using any of them (or a
# module stood in above) gets the real imports.
TENSORFLOW_MODULES = frozenset(STAND_INS) | {
    "rasa.core.policies.unexpected_intent_policy",
    "rasa.nlu.featurizers.dense_featurizer.lm_featurizer",
    "rasa.nlu.featurizers.dense_featurizer.convert_featurizer",
    "rasa.utils.tensorflow.models",
}

# metadata.json follows the components in Rasa's archive; when TensorFlow
# weights come first the archive is hundreds of MB. Past this much unpacked
# data we stop looking and keep the real imports (that model is not lean).
_METADATA_SEARCH_LIMIT = 128 * 1024 * 1024


class StandInUsed(ImportError):
    """Something needed a class that bot.lean_rasa stood in for."""


def _refusal(name: str) -> str:
    return (
        f"{name} needs TensorFlow, which bot.lean_rasa kept out of this Rasa "
        f"process because the model's metadata lists no TensorFlow component. "
        f"Start Rasa with {ENV_SWITCH}=0 to import it for real."
    )


def _refuse(name: str) -> StandInUsed:
    return StandInUsed(_refusal(name))


class _StandInMeta(type):
    """Unrelated to every real class; any use beyond a type check fails."""

    def __getattr__(cls, attribute: str) -> Any:
        # An AttributeError, so that hasattr() and getattr(..., default) probes
        # still answer plainly.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise AttributeError(_refusal(f"{cls.__module__}.{cls.__name__}.{attribute}"))

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(f"{cls.__module__}.{cls.__name__}")


def _stand_in_class(module: str, name: str) -> type:
    def refuse_subclass(cls: type, **kwargs: Any) -> None:
        raise _refuse(f"{module}.{name} (subclassed by {cls.__module__}.{cls.__qualname__})")

    return _StandInMeta(
        name,
        (),
        {
            "__module__": module,
            "__doc__": "Stand-in from bot.lean_rasa; see there.",
            "__init_subclass__": classmethod(refuse_subclass),
        },
    )


class _StandInLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["LEAN_RASA_STAND_IN"] = True
        for name in STAND_INS[module.__name__]:
            setattr(module, name, _stand_in_class(module.__name__, name))


class StandInFinder(importlib.abc.MetaPathFinder):
    """Serves the STAND_INS modules; declines everything else."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in STAND_INS:
            return None
        return importlib.machinery.ModuleSpec(fullname, _StandInLoader(), origin="bot.lean_rasa")


def model_metadata(model: Path, limit: int = _METADATA_SEARCH_LIMIT) -> dict[str, Any] | None:
    """metadata.json of a Rasa model archive, or None if not found cheaply."""
    seen = 0
    try:
        # Streaming: a .tar.gz has no index, and we stop at metadata.json.
        with tarfile.open(model, "r|gz") as archive:
            for member in archive:
                if member.name.lstrip("/") == "metadata.json":
                    data = archive.extractfile(member)
                    return json.load(data) if data else None
                seen += member.size
                if seen > limit:
                    return None
    except (OSError, tarfile.TarError, ValueError):
        return None
    return None


def _component_modules(metadata: dict[str, Any]) -> set[str]:
    modules: set[str] = set()
    for schema in ("train_schema", "predict_schema"):
        for node in metadata.get(schema, {}).get("nodes", {}).values():
            modules.add(str(node.get("uses", "")).rpartition(".")[0])
    return modules


def needs_tensorflow(metadata: dict[str, Any]) -> bool:
    """Whether any component of the model lives in a TensorFlow module of Rasa."""
    return bool(_component_modules(metadata) & TENSORFLOW_MODULES)


def _model_argument(argv: Sequence[str]) -> Path | None:
    for index, argument in enumerate(argv):
        if argument in ("--model", "-m") and index + 1 < len(argv):
            return Path(argv[index + 1])
        if argument.startswith("--model="):
            return Path(argument.partition("=")[2])
    return None


def lean_possible(argv: Sequence[str]) -> bool:
    """Whether the model Rasa is told to serve provably needs no TensorFlow."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    model = _model_argument(argv)
    if model is None or not model.is_file():
        return False
    metadata = model_metadata(model)
    return metadata is not None and not needs_tensorflow(metadata)


def install(argv: Sequence[str]) -> bool:
    """Stand in for Rasa's TensorFlow modules if the model allows; True if so.

    Call before anything imports Rasa.
    """
    if any(isinstance(finder, StandInFinder) for finder in sys.meta_path):
        return True
    if any(name in sys.modules for name in STAND_INS):
        return False  # too late: the real modules are in
    if not lean_possible(argv):
        return False
    sys.meta_path.insert(0, StandInFinder())
    return True


def stood_in(modules: Iterable[str] = STAND_INS) -> list[str]:
    """Which of these modules are stand-ins in this process (for diagnostics)."""
    return [m for m in modules if getattr(sys.modules.get(m), "LEAN_RASA_STAND_IN", False)]
