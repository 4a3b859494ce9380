"""The batch-invariant settings on the engine itself, step by step, on whatever CPU runs the suite.

Over HTTP the arrival of requests is only roughly controlled; here every scenario of
``benchmarks.batch_invariance`` places them at exact steps: all at once, one every 3 steps, long
prompts split across steps at other places by short ones decoding beside them, and prompts whose
beginning is in the prefix cache. Each must give exactly the tokens the prompt gives alone.
"""

import pytest

from benchmarks.batch_invariance import check
from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for

pytestmark = pytest.mark.slow


def test_every_scenario_gives_the_tokens_of_the_prompt_alone(default_model):
    settings = EngineSettings(find_model_files(default_model), batch_invariant=True, enable_prefix_caching=True,
                              plugin_config=plugin_config_for("CPU", {}, batch_invariant=True))
    differ = check(settings, max_tokens=24)
    assert set(differ) == {"together", "staggered", "split", "prefix_cache"}
    assert all(not indexes for indexes in differ.values()), differ
