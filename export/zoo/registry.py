"""Every model ``python -m export`` knows, by name. The parity suite's meta-test holds each to an artifact."""

from __future__ import annotations

from .catalog import CATALOG
from .ewt import POS_EWT
from .seeds import SEED_MODELS
from .spec import ModelSpec
from .shakespeare import CHAR_SHAKESPEARE

REGISTRY: dict[str, ModelSpec] = {m.name: m for m in [*SEED_MODELS, POS_EWT, CHAR_SHAKESPEARE]}
if list(REGISTRY) != list(CATALOG):  # one list of names: --list (the catalog) shows what --all exports
    raise RuntimeError(f"export/zoo: registry {list(REGISTRY)} and catalog {list(CATALOG)} differ")
