"""The tiny random-weight models committed under ``models/tiny`` (built by ``models/tiny/build.py``), for tests of
the speech-to-text and rerank kinds and of vision chat. They load in OpenVINO GenAI with no PyTorch."""

from pathlib import Path

TINY = Path(__file__).resolve().parent.parent / "models" / "tiny"

#: Whisper (``WhisperPipeline``): multilingual vocabulary, random weights, a decoder rigged to say WHISPER_TEXT.
WHISPER = TINY / "whisper"
#: What the tiny Whisper answers for any audio, once per 30 s window, in any language or task.
WHISPER_TEXT = " Hello from a tiny model."
#: With timestamps, each 30 s window gives one segment from its start to this many seconds after it.
WHISPER_SEGMENT_SECONDS = 1.0

#: A BERT cross-encoder (``TextRerankPipeline``): all-MiniLM-L6-v2's vocabulary, random weights.
RERANKER = TINY / "reranker"

#: A Qwen3-Reranker-shaped causal LM (``TextRerankPipeline`` scores its last token's "yes" against "no"): SmolLM2's
#: vocabulary, random weights. GenAI feeds it query + document concatenated: the caller writes the prompt template.
QWEN3_RERANKER = TINY / "qwen3-reranker"

#: A llava-1.5-shaped VLM (``VLMPipeline``, and ``ContinuousBatchingPipeline.add_request`` with images): a CLIP
#: vision tower on 28 x 28 images, SmolLM2's vocabulary plus ``<image>``, random weights (answers never end).
LLAVA = TINY / "llava"
#: Each image becomes this many ``<image>`` tokens in the prompt (28 x 28 pixels in 14-pixel patches).
LLAVA_IMAGE_TOKENS = 4

#: A SpeechT5 text-to-speech model (``Text2SpeechPipeline``) with a HiFi-GAN vocoder: a character vocabulary,
#: random weights, a stop head that never fires, and ``maxlenratio`` 4 in its generation_config.json.
SPEECHT5 = TINY / "speecht5"
#: Two speaker embeddings for it (512 float32 each, raw, as GenAI's samples write them).
SPEECHT5_SPEAKER = SPEECHT5 / "speaker.bin"
SPEECHT5_OTHER_SPEAKER = SPEECHT5 / "other_speaker.bin"
#: What it says for any text: SPEECHT5_SAMPLES_PER_TOKEN samples a token (its character-level tokenizer's tokens:
#: "_" before the first word, one a character, "</s>" at the end), at SPEECHT5_RATE.
SPEECHT5_SAMPLES_PER_TOKEN = 1024
SPEECHT5_RATE = 16_000


def speecht5_samples(text: str) -> int:
    """How many samples the tiny SpeechT5 says ``text`` in (for the ASCII text the tests use): one token a character,
    plus the word marker before the first and the end token."""
    return (len(text) + 2) * SPEECHT5_SAMPLES_PER_TOKEN

#: A Stable-Diffusion-1.5-shaped pipeline (``Text2ImagePipeline``, ``Image2ImagePipeline``, ``InpaintingPipeline``): a
#: CLIP text encoder on CLIP's first 2,000 BPE merges, a UNet and a VAE with 8x latents, SD 1.5's PNDM scheduler,
#: random weights (the images are noise). Width and height must be multiples of 8; the default is 64 x 64.
SD = TINY / "sd"
SD_DEFAULT_SIZE = 64
