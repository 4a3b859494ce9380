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
