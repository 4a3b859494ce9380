"""The one-calculator runner (``ovserve.testing``) checks what a test feeds it, as ``graph check`` checks a graph."""

import pytest

from ovserve.testing import run_calculator
from tests.framework.sample_calculators import Double, Upper


async def test_a_value_of_the_wrong_type_is_refused_naming_the_port_and_both_types():
    with pytest.raises(TypeError, match=r"Upper: input 'TEXT' takes str, not int \(42\)"):
        await run_calculator(Upper, {"TEXT": [42]})
    with pytest.raises(TypeError, match="input 'NUMBER' takes int, not str"):
        await run_calculator(Double, {"NUMBER": ["2"]})


async def test_values_of_the_declared_type_run():
    assert await run_calculator(Upper, {"TEXT": ["hi"]}) == {"UPPER": ["HI"]}
