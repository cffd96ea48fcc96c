"""corebench-example-plugin: a coreset method and a signal shipped from outside corebench."""

__version__ = "0.1.0"
