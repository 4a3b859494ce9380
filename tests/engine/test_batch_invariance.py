"""The batch-invariant settings on the engine itself, step by step, on whatever CPU runs the suite.

Over HTTP the arrival of requests is only roughly controlled; here the scenarios of ``benchmarks.batch_invariance``
that differ from the prompt alone by the batch only place requests at exact steps: all at once, and one every 3
steps, so that prefills and decodes mix differently. Each must give exactly the tokens the prompt gives alone.
The engine has no prefix cache and takes every prompt whole in one step, since a prefix-cache hit or a prompt
split across steps computes the prompt in other shapes, which the mode does not promise to hold
(``benchmarks.batch_invariance`` measures those too).
"""

import pytest

from benchmarks.batch_invariance import check
from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for

pytestmark = pytest.mark.slow


def test_batched_prompts_give_the_tokens_of_the_prompt_alone(default_model):
    settings = EngineSettings(find_model_files(default_model), batch_invariant=True, enable_prefix_caching=False,
                              max_num_batched_tokens=4096,
                              plugin_config=plugin_config_for("CPU", {}, batch_invariant=True))
    differ = check(settings, max_tokens=24, scenarios=("together", "staggered"))
    assert set(differ) == {"together", "staggered"}
    assert all(not indexes for indexes in differ.values()), differ
