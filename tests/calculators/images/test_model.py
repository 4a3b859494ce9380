"""OVMS's ImageGenCalculatorOptions as a graph gives them: its defaults, and the combinations it refuses at load."""

import pytest
from pydantic import ValidationError

from ovserve.calculators.images.model import ImageGenCalculatorOptions


def test_ovms_defaults_and_a_list_of_static_resolutions():
    options = ImageGenCalculatorOptions(models_path="./")
    assert (options.max_resolution, options.max_num_images_per_prompt, options.default_num_inference_steps,
            options.max_num_inference_steps, options.resolutions) == ("4096x4096", 10, 50, 100, ())
    several = ImageGenCalculatorOptions(models_path="./", resolution=" 512x512  768x512 ", default_resolution="768x512")
    assert several.resolutions == ((512, 512), (768, 512))
    assert ImageGenCalculatorOptions(models_path="./", device="CPU GPU GPU").chosen_device == "CPU GPU GPU"


@pytest.mark.parametrize(("options", "words"), [
    ({"resolution": "512x512 512x512"}, "twice"),
    ({"resolution": "512"}, "WIDTHxHEIGHT"),
    ({"guidance_scale": 7.5}, "needs one 'resolution'"),
    ({"resolution": "512x512 768x768", "num_images_per_prompt": 1}, "needs one 'resolution'"),
    ({"default_resolution": "1024x1024", "max_resolution": "512x512"}, "over max_resolution"),
    ({"resolution": "512x512", "default_resolution": "768x768"}, "not among the static"),
    ({"default_num_inference_steps": 200}, "above max_num_inference_steps"),
    ({"lora_adapters": [{"alias": "a", "path": "a.safetensors"}]}, "not served"),
    ({"device": "CPU GPU"}, "one device, or three"),
])
def test_what_ovms_refuses_fails_the_load_saying_why(options, words):
    with pytest.raises(ValidationError, match=words):
        ImageGenCalculatorOptions(models_path="./", **options)
