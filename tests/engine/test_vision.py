"""Vision requests on the continuous-batching engine, on the tiny committed LLaVA: the prompt crosses as text with
GenAI's image tags and the images as encoded files; they batch with each other and with text requests; a bad image
fails its own request only; and the prompt's length with images is counted as GenAI counts it."""

import io

import numpy as np
import openvino as ov
import openvino_genai as ov_genai
from PIL import Image

from ovserve.engine.client import EngineClient
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.settings import EngineSettings, find_model_files
from ovserve.engine.vision import decode_rgb, image_tag, tokens_per_image
from tests.tiny_models import LLAVA, LLAVA_IMAGE_TOKENS

PROMPT = "<|im_start|>user\n{tags}What is in the picture?<|im_end|>\n<|im_start|>assistant\n"


def png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def tokens(request) -> list[int]:
    return [t async for delta in request for t in delta.token_ids]


def prompt_with(images: int) -> str:
    return PROMPT.format(tags="".join(image_tag(i) for i in range(images)))


def test_detail_low_shrinks_the_longer_side_and_keeps_the_shape():
    assert decode_rgb(png(1000, 500), 512).size == (512, 256)
    assert decode_rgb(png(100, 50), 512).size == (100, 50)
    assert decode_rgb(png(1000, 500)).size == (1000, 500)


def test_an_image_costs_its_tokens_and_a_newline_as_genai_counts_them():
    """The count ovserve reports in usage (text tokens + images x tokens_per_image) is VLMPipeline's own."""
    assert tokens_per_image(LLAVA) == LLAVA_IMAGE_TOKENS + 1
    pipeline = ov_genai.VLMPipeline(LLAVA, "CPU")
    tokenizer = ov_genai.Tokenizer(str(LLAVA))
    text_tokens = tokenizer.encode(prompt_with(0), add_special_tokens=False).input_ids.get_size()
    for count in (0, 1, 3):
        images = [ov.Tensor(np.asarray(decode_rgb(png(40, 30, i)))[np.newaxis]) for i in range(count)]
        config = ov_genai.GenerationConfig(max_new_tokens=1, apply_chat_template=False)
        result = pipeline.generate(prompt_with(count), images=images, generation_config=config)
        assert result.perf_metrics.get_num_input_tokens() == text_tokens + count * tokens_per_image(LLAVA)


async def test_image_requests_batch_with_each_other_and_with_text_and_a_bad_image_fails_alone():
    client = EngineClient(EngineSettings(find_model_files(LLAVA)))
    await client.start()
    try:
        params = SamplingParams(max_new_tokens=8, temperature=0)
        steps_before = client.engine_steps
        requests = [client.submit_vision(prompt_with(2), [(png(40, 30, i), None), (png(64, 64, i + 10), 32)], params,
                                         50) for i in range(4)]
        requests.append(client.submit_vision(prompt_with(0), [], params, 13))  # text alone goes as text too
        broken = client.submit_vision(prompt_with(1), [(b"not an image", None)], params, 10)
        answers = [await tokens(request) for request in requests]
        assert all(len(answer) == 8 for answer in answers)
        assert all(request.finish == "length" for request in requests)
        assert requests[0].prompt_tokens == 50
        # five requests of 8 tokens: about the steps of one, not five times as many
        assert client.engine_steps - steps_before < 2 * 8, client.engine_steps - steps_before
        deltas = [delta async for delta in broken]
        assert deltas[-1].finish == "error" and "UnidentifiedImageError" in str(deltas[-1].error)
        # token ids would fail the VLM pipeline's next step: the engine refuses them
        ids = client.submit(np.asarray([1, 2, 3], dtype=np.int64), params)
        deltas = [delta async for delta in ids]
        assert deltas[-1].finish == "error" and "as text" in str(deltas[-1].error)
        again = client.submit_vision(prompt_with(1), [(png(20, 20), None)], params, 10)
        assert len([t async for delta in again for t in delta.token_ids]) == 8
    finally:
        await client.stop()
