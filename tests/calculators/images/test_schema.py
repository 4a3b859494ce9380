"""OpenAI's image request fields as ovserve reads them: honoured, accepted where they change nothing, or refused."""

import pytest

from ovserve.calculators.images.schema import ImageEditForm, ImageGenerationRequest
from ovserve.errors import RequestError


def test_a_form_s_text_fields_are_read_as_their_types():
    form = ImageEditForm.parse({"prompt": "a dog", "n": "2", "strength": "0.5", "size": "64x32",
                                "partial_images": "1"})
    assert (form.count, form.strength, form.size_asked, form.partial_images, form.stream) == (2, 0.5, (64, 32), 1,
                                                                                              False)


@pytest.mark.parametrize("body", [{"quality": "auto"}, {"quality": "standard"}, {"background": "opaque"},
                                  {"moderation": "low"}, {"user": "u-1"}, {"size": "auto"}])
def test_values_that_ask_for_what_ovserve_does_anyway_are_taken(body):
    assert ImageGenerationRequest.parse({"prompt": "a cat", **body}).prompt == "a cat"


@pytest.mark.parametrize(("body", "param"), [
    ({"quality": "hd"}, "quality"), ({"background": "transparent"}, "background"), ({"style": "natural"}, "style"),
    ({"input_fidelity": "high"}, "input_fidelity"), ({"size": "64"}, "size"), ({"partial_images": 4}, "partial_images"),
    ({"rng_seed": -1}, "rng_seed"), ({"guidance_scale": float("nan")}, "guidance_scale"), ({"n": 0}, "n"),
])
def test_what_would_change_the_answer_and_is_not_honoured_is_refused_by_name(body, param):
    with pytest.raises(RequestError) as refused:
        ImageGenerationRequest.parse({"prompt": "a cat", **body})
    assert refused.value.param == param
