"""Plug-in coreset methods. Importing this package registers the built-in ones.

    from corebench.methods import register_method, CoresetMethod, SelectionContext, create_method
"""

from corebench.methods.base import (
    CoresetMethod,
    NoParams,
    ScoreBasedMethod,
    SelectionContext,
    budget_for,
    run_selection,
    validate_selection,
)
from corebench.methods.registry import (
    create_method,
    get_method_class,
    list_methods,
    register_method,
)

# Built-in methods: importing each module runs its @register_method.
from corebench.methods import ccs, easycore, el2n, forgetting, grand, kcenter, moderate, random_sampling, uncertainty  # noqa: E402,F401  isort: skip
from corebench.methods import aum, dyn_unc, friendly, tdds  # noqa: E402,F401  isort: skip  (issue 22: not in `all`)

__all__ = [
    "CoresetMethod",
    "NoParams",
    "ScoreBasedMethod",
    "SelectionContext",
    "budget_for",
    "create_method",
    "get_method_class",
    "list_methods",
    "register_method",
    "run_selection",
    "validate_selection",
]
