"""The committed tiny models load in OpenVINO GenAI and answer: plumbing only (the weights are random)."""

import json
import math

import numpy as np
import openvino as ov
import openvino_genai as ov_genai
import pytest

from tests.tiny_models import (
    LLAVA,
    LLAVA_IMAGE_TOKENS,
    QWEN3_RERANKER,
    RERANKER,
    SD,
    SD_DEFAULT_SIZE,
    SPEECHT5,
    SPEECHT5_OTHER_SPEAKER,
    SPEECHT5_RATE,
    SPEECHT5_SPEAKER,
    WHISPER,
    WHISPER_SEGMENT_SECONDS,
    WHISPER_TEXT,
    speecht5_samples,
)

RATE = 16_000


def audio(seconds: float, seed: int = 0) -> np.ndarray:
    """A 440 Hz tone under noise, 16 kHz mono float32, as WhisperPipeline takes it."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


@pytest.fixture(scope="module")
def whisper() -> ov_genai.WhisperPipeline:
    return ov_genai.WhisperPipeline(WHISPER, "CPU")


@pytest.fixture(scope="module")
def reranker() -> ov_genai.TextRerankPipeline:
    config = ov_genai.TextRerankPipeline.Config()
    config.top_n = 100
    return ov_genai.TextRerankPipeline(RERANKER, "CPU", config)


def test_the_folders_hold_what_genai_reads_and_stay_small():
    for folder, files in ((WHISPER, ["openvino_encoder_model", "openvino_decoder_model", "openvino_tokenizer",
                                     "openvino_detokenizer"]),
                          (RERANKER, ["openvino_model", "openvino_tokenizer", "openvino_detokenizer"]),
                          (QWEN3_RERANKER, ["openvino_model", "openvino_tokenizer", "openvino_detokenizer"]),
                          (LLAVA, ["openvino_language_model", "openvino_text_embeddings_model",
                                   "openvino_vision_embeddings_model", "openvino_tokenizer", "openvino_detokenizer"]),
                          (SPEECHT5, ["openvino_encoder_model", "openvino_decoder_model", "openvino_postnet",
                                      "openvino_vocoder", "openvino_tokenizer", "openvino_detokenizer"]),
                          (SD, ["text_encoder/openvino_model", "unet/openvino_model", "vae_decoder/openvino_model",
                                "vae_encoder/openvino_model", "tokenizer/openvino_tokenizer"])):
        for name in files:
            assert (folder / f"{name}.xml").is_file() and (folder / f"{name}.bin").stat().st_size > 0
        total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        assert total < 16_000_000, f"{folder} grew to {total:,} bytes"
    generation = json.loads((WHISPER / "generation_config.json").read_text())
    assert len(generation["lang_to_id"]) == 99 and generation["lang_to_id"]["<|en|>"] == 50259
    assert generation["task_to_id"] == {"translate": 50358, "transcribe": 50359}
    assert generation["no_timestamps_token_id"] == 50363 and generation["eos_token_id"] == 50257
    assert json.loads((WHISPER / "preprocessor_config.json").read_text())["feature_size"] == 80


@pytest.mark.parametrize(("seconds", "windows"), [(1, 1), (40, 2)])
def test_whisper_transcribes_short_and_long_audio(whisper, seconds, windows):
    result = whisper.generate(audio(seconds))
    assert result.texts == [WHISPER_TEXT * windows]


@pytest.mark.parametrize(("seconds", "starts"), [(1, [0.0]), (40, [0.0, 30.0])])
def test_whisper_timestamps_give_one_chunk_per_window(whisper, seconds, starts):
    result = whisper.generate(audio(seconds), return_timestamps=True)
    assert result.texts == [WHISPER_TEXT * len(starts)]
    chunks = [(chunk.start_ts, chunk.end_ts, chunk.text) for chunk in result.chunks]
    assert chunks == [(pytest.approx(start), pytest.approx(start + WHISPER_SEGMENT_SECONDS), WHISPER_TEXT)
                      for start in starts]


def test_whisper_streams_its_text_piece_by_piece(whisper):
    pieces: list[str] = []

    def streamer(piece: str) -> ov_genai.StreamingStatus:
        pieces.append(piece)
        return ov_genai.StreamingStatus.RUNNING

    result = whisper.generate(audio(1), streamer=streamer)
    assert len(pieces) > 1 and "".join(pieces) == result.texts[0] == WHISPER_TEXT


def test_whisper_takes_language_task_prompt_sampling_and_a_token_limit(whisper):
    samples = audio(1)
    assert whisper.generate(samples, language="<|fr|>", task="translate").texts == [WHISPER_TEXT]
    assert whisper.generate(samples, initial_prompt="Some earlier words.").texts == [WHISPER_TEXT]
    sampled = whisper.generate(samples, do_sample=True, temperature=1.0, rng_seed=7, return_timestamps=True)
    assert sampled.texts == [WHISPER_TEXT]
    assert WHISPER_TEXT.startswith(whisper.generate(samples, max_new_tokens=2).texts[0])


def test_whisper_word_timestamps():
    pipeline = ov_genai.WhisperPipeline(WHISPER, "CPU", word_timestamps=True)
    result = pipeline.generate(audio(3), return_timestamps=True, word_timestamps=True)
    words = [(word.word, word.start_ts, word.end_ts) for word in result.words]
    assert "".join(word for word, _, _ in words) == WHISPER_TEXT
    assert all(0.0 <= start <= end <= 3.0 for _, start, end in words)


def test_reranker_scores_every_document_once_and_repeats_itself(reranker):
    query = "what is the capital of france?"
    documents = ["Paris is the capital of France.", "The cat sat on the mat.", "OpenVINO runs models on CPUs.",
                 "", "word " * 1000]
    first = reranker.rerank(query, documents)
    assert sorted(index for index, _ in first) == list(range(len(documents)))
    scores = [score for _, score in first]
    assert all(math.isfinite(score) and 0.0 <= score <= 1.0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) > 1
    assert reranker.rerank(query, documents) == first


def test_reranker_top_n_keeps_the_best():
    config = ov_genai.TextRerankPipeline.Config()
    config.top_n = 2
    pipeline = ov_genai.TextRerankPipeline(RERANKER, "CPU", config)
    documents = ["one", "two", "three", "four"]
    best = pipeline.rerank("a query", documents)
    assert len(best) == 2 and best[0][1] >= best[1][1]


def test_whisper_refuses_audio_of_200_samples_or_fewer(whisper):
    """GenAI's feature extractor needs more than n_fft / 2 samples: a server must refuse or pad such uploads."""
    with pytest.raises(RuntimeError, match="n_fft"):
        whisper.generate(np.zeros(200, dtype=np.float32))
    assert whisper.generate(np.zeros(201, dtype=np.float32)).texts == [WHISPER_TEXT]


def test_qwen3_style_reranker_scores_each_document_as_if_alone():
    """The causal-LM path: GenAI pads on the left and reads the last token's yes/no, so a document's score
    does not depend on the others in the call."""
    config = ov_genai.TextRerankPipeline.Config()
    config.top_n = 100
    pipeline = ov_genai.TextRerankPipeline(QWEN3_RERANKER, "CPU", config)
    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements of the Query. "
              'Answer only "yes" or "no".<|im_end|>\n<|im_start|>user\n<Query>: what is the capital of france?\n'
              "<Document>: ")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    documents = [text + suffix for text in ("Paris is the capital of France.", "The cat sat.",
                                            "a much longer document " * 20)]
    together = dict(pipeline.rerank(prefix, documents))
    assert sorted(together) == [0, 1, 2]
    assert all(math.isfinite(score) and 0.0 < score < 1.0 for score in together.values())
    for index, document in enumerate(documents):
        (alone,) = pipeline.rerank(prefix, [document])
        assert alone[1] == pytest.approx(together[index], abs=0.02)


def image(height: int, width: int, seed: int = 0) -> ov.Tensor:
    """A random RGB image as GenAI's VLMs take it: uint8, NHWC with N = 1."""
    pixels = np.random.default_rng(seed).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    return ov.Tensor(pixels)


def test_llava_on_the_continuous_batching_pipeline_takes_a_text_prompt_with_images():
    """``add_request(id, prompt, images, config)``: the prompt is text with GenAI's image tags, and the requests
    batch: two image requests and a text-only one run in the same steps."""
    scheduler = ov_genai.SchedulerConfig()
    scheduler.cache_size = 1
    pipeline = ov_genai.ContinuousBatchingPipeline(LLAVA, scheduler, "CPU")
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = 6  # random weights never end their answer
    config.apply_chat_template = False
    handles = [pipeline.add_request(0, "What is in <ov_genai_image_0>?", [image(40, 50)], config),
               pipeline.add_request(1, "Compare <ov_genai_image_0> with <ov_genai_image_1>.",
                                    [image(28, 28, 1), image(300, 200, 2)], config),
               pipeline.add_request(2, "No image here.", [], config)]
    steps = 0
    while pipeline.has_non_finished_requests():
        pipeline.step()
        steps += 1
    for handle in handles:
        (output,) = handle.read_all()
        assert len(output.generated_ids) == 6
        assert output.finish_reason == ov_genai.GenerationFinishReason.LENGTH
    assert steps <= 6 + 1  # one prefill for all three, then their tokens together


def test_llava_in_the_vlm_pipeline_counts_each_image_as_its_tokens():
    pipeline = ov_genai.VLMPipeline(LLAVA, "CPU")
    one = pipeline.generate("What is this?", images=[image(40, 50)], max_new_tokens=3)
    two = pipeline.generate("What is this?", images=[image(40, 50), image(64, 64, 1)], max_new_tokens=3)
    assert len(one.texts) == 1 and one.texts[0]
    # each image adds its tokens and the newline the chat template puts after its tag
    assert two.perf_metrics.get_num_input_tokens() - one.perf_metrics.get_num_input_tokens() == LLAVA_IMAGE_TOKENS + 1


@pytest.fixture(scope="module")
def speecht5() -> ov_genai.Text2SpeechPipeline:
    return ov_genai.Text2SpeechPipeline(SPEECHT5, "CPU")


def speaker(path) -> ov.Tensor:
    return ov.Tensor(np.fromfile(path, dtype="<f4").reshape(1, 512))


def test_speecht5_speaks_each_text_for_a_length_set_by_its_tokens(speecht5):
    assert list(speecht5.get_speaker_embedding_shape()) == [1, 512]
    assert json.loads((SPEECHT5 / "config.json").read_text())["architectures"] == ["SpeechT5ForTextToSpeech"]
    for text in ("Hello there.", "How are you today, my friend?", "a"):
        result = speecht5.generate(text)
        (speech,) = result.speeches
        samples = np.array(speech.data)
        assert result.output_sample_rate == SPEECHT5_RATE
        assert samples.dtype == np.float32 and samples.shape == (1, speecht5_samples(text))
        assert np.all(np.abs(samples) <= 1.0) and samples.std() > 0.01  # not silence (the vocoder ends in tanh)


def test_speecht5_takes_speaker_embeddings_and_repeats_itself(speecht5):
    plain = np.array(speecht5.generate("Hello there.").speeches[0].data)
    first = np.array(speecht5.generate("Hello there.", speaker(SPEECHT5_SPEAKER)).speeches[0].data)
    again = np.array(speecht5.generate("Hello there.", speaker(SPEECHT5_SPEAKER)).speeches[0].data)
    other = np.array(speecht5.generate("Hello there.", speaker(SPEECHT5_OTHER_SPEAKER)).speeches[0].data)
    assert plain.shape == first.shape == other.shape
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_speecht5_length_bound_is_the_generation_config_s(speecht5):
    """The stop head never fires: the decoder runs int(tokens x maxlenratio / 2) steps of two 256-sample frames."""
    assert speecht5.get_generation_config().maxlenratio == 4.0
    short = speecht5.generate("Hello there.", maxlenratio=2.0).speeches[0]
    assert short.get_size() == speecht5_samples("Hello there.") // 2


def test_speecht5_refuses_a_speaker_embedding_of_another_shape(speecht5):
    with pytest.raises(RuntimeError):
        speecht5.generate("Hello there.", ov.Tensor(np.zeros((1, 16), dtype=np.float32)))
    assert speecht5.generate("Hello.").speeches[0].get_size() == speecht5_samples("Hello.")


@pytest.fixture(scope="module")
def sd() -> tuple[ov_genai.Text2ImagePipeline, ov_genai.Image2ImagePipeline, ov_genai.InpaintingPipeline]:
    """The three pipelines built from one another, so the weights load once (as the image kind builds them)."""
    inpaint = ov_genai.InpaintingPipeline(SD, "CPU")
    image2image = ov_genai.Image2ImagePipeline(inpaint)
    return ov_genai.Text2ImagePipeline(image2image), image2image, inpaint


def picture(height: int, width: int, seed: int = 0) -> ov.Tensor:
    return ov.Tensor(np.random.default_rng(seed).integers(0, 256, (1, height, width, 3), dtype=np.uint8))


def test_sd_generates_images_of_the_size_asked(sd):
    text2image, _, _ = sd
    config = text2image.get_generation_config()
    assert (config.width, config.height) == (SD_DEFAULT_SIZE, SD_DEFAULT_SIZE) or config.width <= 0
    assert list(text2image.generate("a cat", num_inference_steps=2).shape) == [1, 64, 64, 3]
    images = text2image.generate("a cat", width=96, height=48, num_inference_steps=2, num_images_per_prompt=2)
    assert list(images.shape) == [2, 48, 96, 3] and images.data.dtype == np.uint8


def test_sd_step_callback_sees_every_step_decodes_a_latent_and_stops_early(sd):
    text2image, _, _ = sd
    seen = []

    def callback(step: int, steps: int, latent: ov.Tensor) -> bool:
        seen.append((step, steps))
        if step == 0:
            assert list(text2image.decode(latent).shape) == [1, 64, 64, 3]
        return step == 1  # True stops the generation

    stopped = text2image.generate("a cat", num_inference_steps=4, callback=callback)
    assert [step for step, _ in seen] == [0, 1] and seen[0][1] >= 4
    assert list(stopped.shape) == []  # a stopped generation returns no images


def test_sd_edits_an_image_with_and_without_a_mask(sd):
    _, image2image, inpaint = sd
    steps = []
    edited = image2image.generate("a dog", picture(48, 80), strength=0.5, num_inference_steps=4,
                                  callback=lambda step, total, latent: steps.append(step) or False)
    assert list(edited.shape) == [1, 48, 80, 3] and 0 < len(steps) < 4  # strength 0.5 runs about half the steps
    assert list(image2image.generate("a dog", picture(64, 64), strength=0.8, num_inference_steps=2,
                                     num_images_per_prompt=2).shape) == [2, 64, 64, 3]
    mask = ov.Tensor(np.full((1, 64, 64, 3), 255, dtype=np.uint8))
    assert list(inpaint.generate("a dog", picture(64, 64), mask, num_inference_steps=2).shape) == [1, 64, 64, 3]
