"""Reference models from RobustBench (optional extra: `pip install 'corebench[robustbench]'`).

Never imported by the core suite: robustbench 1.1.1 does not import as shipped (it imports a
module `autoattack` that its `pyautoattack` dependency does not provide) and pins
timm==1.0.9. It is imported lazily here, and any failure to import becomes one clear line.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from corebench.core.errors import BenchError

INSTALL_HINT = "pip install 'corebench[robustbench]'"


def _robustbench_utils():
    try:
        from robustbench import utils
    except Exception as exc:  # ImportError, or whatever its own imports raise
        raise BenchError(
            f"robustbench is not installed or does not import ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from None
    return utils


def load_reference_model(
    name: str, dataset: str, threat_model: str = "Linf", model_dir: str | Path = "models"
) -> nn.Module:
    """A RobustBench model zoo entry (e.g. 'Carmon2019Unlabeled', 'cifar10'), in eval mode.

    Its weights are downloaded by robustbench into `model_dir` (needs internet).
    """
    utils = _robustbench_utils()
    model = utils.load_model(model_name=name, model_dir=str(model_dir), dataset=dataset,
                             threat_model=threat_model)
    return model.eval()
