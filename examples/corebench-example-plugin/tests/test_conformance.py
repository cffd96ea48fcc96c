"""The plug-in's own tests: corebench's conformance kit on each option (no torch needed)."""

import pytest

from corebench.methods.testing import assert_method_conforms


@pytest.mark.parametrize("params", [{}, {"direction": "easiest"}, {"class_balanced": True}])
def test_flip_gap_conforms(params):
    assert_method_conforms("flip_gap", **params)
