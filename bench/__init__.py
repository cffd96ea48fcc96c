"""corebench: coreset selection methods measured by the adversarial robustness they preserve."""

__version__ = "0.1.0"
