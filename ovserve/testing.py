"""Helpers for testing calculators: see :mod:`ovserve.framework.testing`."""

from ovserve.framework.testing import CalculatorRunner, calculator_spec, run_calculator

__all__ = ["CalculatorRunner", "calculator_spec", "run_calculator"]
