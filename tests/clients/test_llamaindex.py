"""LlamaIndex's ``OpenAILike`` against the server: chat, stream_chat and complete, sync and async; a required tool
call and structured output for the agents and programs built on it.

In an environment of its own: llama-index-llms-openai requires ``openai<3``, and installed next to the test extra it
would downgrade openai for the whole suite. So the module builds a virtual environment holding nothing but
``pip install llama-index-llms-openai-like``, as a user's would, and keeps it in the pytest cache
(``.pytest_cache/d/llamaindex-venv``) for the next run. Each test runs a short script in it against the session's
server and checks the JSON the script prints.

Offline: the script resolves only the loopback host (as ``tests.clients.refuse_the_network`` does in-process), so a
download fails at once. llama-index-core ships the tiktoken encodings and the NLTK data (stopwords, punkt) it would
otherwise download on first use, in ``llama_index/core/_static``, and finds them there as long as neither
TIKTOKEN_CACHE_DIR nor NLTK_DATA points elsewhere (the scripts run without either). ``OpenAILike``'s ``tokenizer``
is left unset on purpose: a string there is a Hugging Face tokenizer name, fetched from the hub. ``context_window``
is given, so nothing looks the model name up."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

PACKAGE = "llama-index-llms-openai-like>=0.8"

# What every script starts with: the network refused, LlamaIndex imported, ``llm(**settings)`` for an ``OpenAILike``
# on the server (its base URL and model name come as arguments), and ``report(**result)`` to print the result.
PRELUDE = textwrap.dedent('''
    import asyncio
    import json
    import socket
    import sys

    resolve = socket.getaddrinfo


    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"these tests are offline: {name!r} is not resolved")
        return resolve(host, *args, **kwargs)


    socket.getaddrinfo = loopback_only

    from llama_index.core.llms import ChatMessage
    from llama_index.core.prompts import PromptTemplate
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai_like import OpenAILike
    from pydantic import BaseModel

    BASE_URL, MODEL_NAME = sys.argv[1:]
    HELLO = [ChatMessage(role="user", content="Say hello to me.")]


    def llm(**settings):
        settings = {"max_tokens": 16, **settings}
        return OpenAILike(model=MODEL_NAME, api_base=BASE_URL, api_key="unused", is_chat_model=True,
                          context_window=8192, temperature=0, max_retries=0, timeout=60, **settings)


    def report(**result):
        print(json.dumps(result))

''')


def run(command: list, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def llamaindex_python(request, tmp_path_factory) -> Path:
    """The interpreter of a virtual environment with ``PACKAGE`` installed from PyPI: the one in the pytest cache
    if it has the package already, else a new one there. A failing install fails the tests, with pip's output."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    venv = cache.mkdir("llamaindex-venv") if cache else tmp_path_factory.mktemp("llamaindex-venv")
    python = venv / "bin" / "python"
    installed = "import importlib.metadata as metadata; metadata.version('llama-index-llms-openai-like')"
    if python.exists() and run([python, "-c", installed], timeout=60).returncode == 0:
        return python
    for command in ([sys.executable, "-m", "venv", "--clear", venv],
                    [python, "-m", "pip", "install", "-q", PACKAGE]):
        done = run(command, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(map(str, command))} failed:\n{done.stdout}{done.stderr}", pytrace=False)
    return python


@pytest.fixture
def llamaindex(llamaindex_python, server, tmp_path):
    """``llamaindex(body)`` runs ``PRELUDE`` and then ``body`` in the LlamaIndex environment against the server,
    and returns what the body reported."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("TIKTOKEN_CACHE_DIR", "NLTK_DATA", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    def run_script(body: str) -> dict:
        script = tmp_path / "script.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        done = subprocess.run([str(llamaindex_python), str(script), f"{server.base_url}/v3", MODEL_NAME],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
        if done.returncode != 0 or not done.stdout.strip():
            pytest.fail(f"{script} failed ({done.returncode}):\n{done.stdout}{done.stderr}", pytrace=False)
        return json.loads(done.stdout.splitlines()[-1])

    return run_script


def test_chat_answers_with_text(llamaindex):
    result = llamaindex("""
        response = llm().chat(HELLO)
        report(role=response.message.role, content=response.message.content,
               finish_reason=response.raw.choices[0].finish_reason)
    """)
    assert result["role"] == "assistant" and result["content"].strip()
    assert result["finish_reason"] in ("stop", "length")


def test_stream_chat_deltas_add_up_to_the_chat_answer(llamaindex):
    result = llamaindex("""
        model = llm()
        answer = model.chat(HELLO).message.content
        parts = list(model.stream_chat(HELLO))
        report(answer=answer, deltas=[part.delta for part in parts], last=parts[-1].message.content,
               finish_reason=parts[-1].raw.choices[0].finish_reason)
    """)
    assert len(result["deltas"]) > 1
    assert "".join(delta or "" for delta in result["deltas"]) == result["last"] == result["answer"]
    assert result["finish_reason"] in ("stop", "length")


def test_complete_goes_through_chat_and_answers_with_text(llamaindex):
    result = llamaindex("""
        response = llm().complete("Name a colour.")
        report(text=response.text, finish_reason=response.raw.choices[0].finish_reason)
    """)
    assert result["text"].strip()
    assert result["finish_reason"] in ("stop", "length")


def test_async_chat_and_stream_complete(llamaindex):
    result = llamaindex("""
        async def main():
            model = llm()
            chat = await model.achat(HELLO)
            parts = [part async for part in await model.astream_complete("Name a colour.")]
            report(chat=chat.message.content, texts=[part.text for part in parts])


        asyncio.run(main())
    """)
    assert result["chat"].strip()
    assert result["texts"] and result["texts"][-1].strip()


def test_a_required_tool_call_is_one_the_tool_can_run(llamaindex):
    result = llamaindex("""
        def get_weather(city: str) -> str:
            "Get the current weather in a city."
            return f"sunny in {city}"


        model = llm(is_function_calling_model=True, max_tokens=60)
        tool = FunctionTool.from_defaults(fn=get_weather)
        response = model.chat_with_tools([tool], user_msg="What is the weather like in Paris?", tool_required=True,
                                         allow_parallel_tool_calls=False)
        calls = model.get_tool_calls_from_response(response)
        report(finish_reason=response.raw.choices[0].finish_reason,
               calls=[{"name": call.tool_name, "kwargs": call.tool_kwargs, "output": tool(**call.tool_kwargs).content}
                      for call in calls],
               arguments=[call.function.arguments for call in response.message.additional_kwargs["tool_calls"]])
    """)
    assert result["finish_reason"] == "tool_calls"
    (call,) = result["calls"]
    assert call["name"] == "get_weather" and isinstance(call["kwargs"]["city"], str)
    assert call["output"].startswith("sunny")
    (arguments,) = result["arguments"]
    assert json.loads(arguments) == call["kwargs"]


def test_structured_predict_with_structured_outputs_gives_the_model(llamaindex):
    result = llamaindex("""
        class Capital(BaseModel):
            "A country's capital."

            country: str
            capital: str


        model = llm(should_use_structured_outputs=True, max_tokens=60)
        answer = model.structured_predict(Capital, PromptTemplate("What is the capital of {country}?"),
                                          country="France")
        report(type=type(answer).__name__, answer=answer.model_dump(), schema=Capital.model_json_schema())
    """)
    assert result["type"] == "Capital"
    jsonschema.validate(result["answer"], result["schema"])
    assert result["answer"]["capital"]
