"""What a board asks about a recorded method, answered from the installed registry.

The boards (`corebench.boards.board`, `corebench.boards.leaderboard`) import no method: a board is made from
records, and what it needs to know about a method is handed in by its caller as `facts`, an
object with the two functions below (this module is one). Both answer for a method that is
not installed here (a plug-in made the records elsewhere) too: None and "".
"""

from __future__ import annotations

import functools
import json
import logging

from corebench.core.spec import ScoringConfig
from corebench.methods.base import ScoringNeed, scoring_need
from corebench.methods.registry import create_method, get_method_class

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1024)
def need(method: str, options: str, scoring: str) -> ScoringNeed | None:
    """`scoring_need` of `method` built with its recorded options under the recorded scoring
    settings (both JSON, sorted keys), for records older than `cost.scoring_runs[].epochs_needed`;
    None when the method cannot be rebuilt here (a plug-in not installed, options it no longer
    takes). Cached: once per method, options and settings in a board run."""
    try:
        known = set(get_method_class(method).Params.__dataclass_fields__)
        built = create_method(method, **{k: v for k, v in json.loads(options).items() if k in known})
        settings = ScoringConfig(**json.loads(scoring))
        return scoring_need(built, settings.epochs, settings.snapshots())
    except Exception as exc:  # noqa: BLE001 - any failure means "charge what was trained"
        log.debug("no scoring need for %s: %s", method, exc)
        return None


def fact(method: str, name: str) -> str:
    """A class fact of a registered method (`reference_budget`, `randomness`); "" for a method
    not installed where the boards are made."""
    try:
        return str(getattr(get_method_class(method), name, ""))
    except Exception:  # noqa: BLE001 - a plug-in not installed here
        return ""
