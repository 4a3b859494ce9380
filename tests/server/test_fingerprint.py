"""system_fingerprint on the real model: in every chat and text completion answer and streamed chunk, the same
for every request to the loaded model, and the one the server logged when the model loaded."""

import re

import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Say hi."}]


def test_every_answer_and_chunk_carries_the_fingerprint_the_model_loaded_with(server):
    logged = re.findall(r"system_fingerprint (fp_[0-9a-f]{10})\b", "".join(server.lines))
    assert len(set(logged)) == 1, server.output()
    client, loose = server.openai(), server.openai(strict=False)
    chat = client.chat.completions.create(model=MODEL_NAME, messages=ASK, max_tokens=4)
    text = client.completions.create(model=MODEL_NAME, prompt=["Hello", "Bye"], max_tokens=3)
    chat_chunks = list(client.chat.completions.create(model=MODEL_NAME, messages=ASK, max_tokens=4, stream=True,
                                                      stream_options={"include_usage": True}))
    text_chunks = list(loose.completions.create(model=MODEL_NAME, prompt="Hello", max_tokens=3, stream=True,
                                                stream_options={"include_usage": True}))
    assert len(chat_chunks) > 2 and len(text_chunks) > 2 and chat_chunks[-1].usage and text_chunks[-1].usage
    fingerprints = {chat.system_fingerprint, text.system_fingerprint,
                    *(chunk.system_fingerprint for chunk in chat_chunks + text_chunks)}
    assert fingerprints == {logged[0]}


def test_a_server_computing_in_other_precisions_has_another_fingerprint(server, f32_server):
    # f32 inference, f32 KV cache, no dynamic quantization: not the defaults of any CPU kind
    def fingerprint(running):
        return running.openai().completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=1).system_fingerprint

    assert fingerprint(f32_server) != fingerprint(server)
    assert fingerprint(f32_server) == fingerprint(f32_server)
