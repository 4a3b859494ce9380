"""The one-request LLM kind: OpenVINO GenAI's stateful ``LLMPipeline`` (``VLMPipeline`` for a vision model), one
request at a time, as OVMS serves NPU.

OVMS runs a language model on the stateful pipeline for NPU, and for graphs with ``pipeline_type: LM``: requests
may arrive together, and run one after another. Here the pipeline is a one-call kind (:class:`StatefulLLMSpec`):
each request is one ``generate`` call (:class:`StatefulGenerateJob`) in the engine process, its tokens sent to the
client as they come (partial results), the rest queued, up to ``max_requests`` in all (past it: 503 with
``Retry-After``). A
client that goes away cancels its call at the next token, through the pipeline's streamer.

What the stateful pipeline does differently from the batching one (OpenVINO GenAI 2026.4, measured on CPU):

- its result has one summed score, not each token's log-probability: ``logprobs`` is refused (a 400, before the
  engine sees it: :mod:`ovserve.calculators.llm.stateful_limits`);
- stop strings, with a prompt of token ids, ended the answer before its first token (stop " Paris" gave nothing
  for "The capital of France is"): the detokenizer alone cuts them (it always does);
- it takes ``prompt_lookup`` as a property but then fails every call unless the request sets prompt lookup's
  settings: refused at load (served on the batching engine).

The front end (:class:`StatefulEngine`) is a :class:`~ovserve.engine.interface.GenerationEngine`, so the LLM graph
runs on it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ovserve.engine.call_client import CallEngine, CallRequest
from ovserve.engine.client import TokenDelta
from ovserve.engine.devices import checked_device, vision_properties
from ovserve.engine.interface import GenerationEngine, TokenStream
from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore
from ovserve.engine.protocol import FINISH_ABORT, FINISH_LENGTH, FINISH_STOP, EngineInfo, SamplingParams
from ovserve.engine.settings import PROMPT_LOOKUP, ModelFilesSpec
from ovserve.engine.vision import image_tensor
from ovserve.framework.metrics import Histogram

#: The most requests the engine holds at once (running and waiting), when the graph does not say
#: (``max_queued_requests``, as the speech nodes name it).
DEFAULT_MAX_REQUESTS = 16


@dataclass(frozen=True)
class StatefulLLMSpec(ModelFilesSpec):
    """A language model on the stateful pipeline: its files, the device and OpenVINO properties, and how many
    requests it may hold at once, the running one included."""

    one_call: ClassVar[bool] = True

    max_requests: int = DEFAULT_MAX_REQUESTS

    @property
    def max_in_flight(self) -> int:
        return self.max_requests

    def load(self) -> EngineCore:
        import openvino_genai

        if self.plugin_config.get(PROMPT_LOOKUP):
            raise ValueError(f"{PROMPT_LOOKUP} runs on the continuous-batching pipeline, not the stateful one: drop "
                             f"pipeline_type LM or {PROMPT_LOOKUP}")
        device = checked_device(self.device)
        if self.model.vision:
            properties = vision_properties(device, self.plugin_config)
            pipeline = openvino_genai.VLMPipeline(str(self.model.path), device, **properties)
        else:
            pipeline = openvino_genai.LLMPipeline(str(self.model.path), device, **self.plugin_config)
        return CallCore(pipeline, concurrency=1)


class _TokenStreamer:
    """GenAI's streamer for one call: sends each new token to the client and cancels the call once it is aborted."""

    def __init__(self, emit: Any, cancelled: CallSignal) -> None:
        import openvino_genai

        class Streamer(openvino_genai.StreamerBase):
            def write(inner, token: Any) -> Any:
                if cancelled.is_set():
                    return openvino_genai.StreamingStatus.CANCEL
                ids = [token] if isinstance(token, int) else list(token)
                self.sent += len(ids)
                emit(ids)
                return openvino_genai.StreamingStatus.RUNNING

            def end(inner) -> None:
                pass

        self.sent = 0
        self.streamer = Streamer()


@dataclass(frozen=True, slots=True)
class StatefulGenerateJob(CallJob):
    """One request on the stateful pipeline: its prompt as int64 token ids' bytes, and its settings. Its partial
    results are lists of new token ids; its result is the token ids not sent yet and how it finished."""

    token_ids: bytes
    params: SamplingParams

    def run(self, pipeline: Any, emit: Any, cancelled: CallSignal) -> tuple[list[int], str]:
        import openvino
        import openvino_genai

        if isinstance(pipeline, openvino_genai.VLMPipeline):
            raise ValueError("this model's engine takes prompts as text with images (a StatefulVisionJob)")
        ids = np.frombuffer(self.token_ids, dtype=np.int64).reshape(1, -1)
        streamer = _TokenStreamer(emit, cancelled)
        result = pipeline.generate(openvino.Tensor(ids), self.params.to_generation_config(), streamer.streamer)
        tokens = list(result.tokens[0]) if result.tokens else []
        return tokens[streamer.sent:], finish_of(result)


def finish_of(result: Any) -> str:
    """How a ``generate`` call ended, from its result's finish reasons (``stop`` unless it says ``length``)."""
    import openvino_genai

    reasons = list(getattr(result, "finish_reasons", None) or [])
    length = bool(reasons) and reasons[0] == openvino_genai.GenerationFinishReason.LENGTH
    return FINISH_LENGTH if length else FINISH_STOP


@dataclass(frozen=True, slots=True)
class StatefulVisionJob(CallJob):
    """One request with images on the stateful ``VLMPipeline``: the prompt's text (chat template applied, an image
    tag where each image goes), each image's encoded file with the longest side it may keep, and the settings (as
    :class:`~ovserve.engine.vision.VisionGenerateJob`). Its partial results are lists of new token ids; its result
    is ``([], how it finished)``: every token came through the streamer."""

    prompt: str
    images: tuple[bytes, ...]
    max_sides: tuple[int | None, ...]
    params: SamplingParams

    def run(self, pipeline: Any, emit: Any, cancelled: CallSignal) -> tuple[list[int], str]:
        import openvino_genai

        if not isinstance(pipeline, openvino_genai.VLMPipeline):
            raise ValueError("this model's engine takes no images")
        images = [image_tensor(data, side) for data, side in zip(self.images, self.max_sides, strict=True)]
        config = self.params.to_generation_config()
        config.apply_chat_template = False  # the prompt is the chat template's text already
        streamer = _TokenStreamer(emit, cancelled)
        result = pipeline.generate(self.prompt, images=images, generation_config=config, streamer=streamer.streamer)
        return [], finish_of(result)


class StatefulStream:
    """One request on a :class:`StatefulEngine`: iterate it for :class:`~ovserve.engine.client.TokenDelta`\\ s, as a
    batching engine's request."""

    def __init__(self, request: CallRequest, prompt_tokens: int) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.finish: str | None = None

    def __aiter__(self) -> AsyncIterator[TokenDelta]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[TokenDelta]:
        try:
            async for payload in self.request.partials():
                if self.request.finish is None:
                    yield TokenDelta(tuple(payload), None)
                elif payload is None:
                    self.finish = FINISH_ABORT
                    yield TokenDelta((), FINISH_ABORT)
                else:
                    rest, self.finish = payload
                    yield TokenDelta(tuple(rest), self.finish)
        except Exception as error:  # the engine failed it, died, or the server stops
            self.finish = "error"
            yield TokenDelta((), "error", error)

    def abort(self) -> None:
        self.request.abort()


class StatefulEngine(GenerationEngine):
    """The front end of the stateful kind in the HTTP process: the LLM graph's engine for ``pipeline_type: LM`` and
    NPU. One engine process (restart, backoff and the watchdog as every kind's); requests are refused with 503 while
    it holds ``max_requests``, the running one included."""

    def __init__(self, spec: StatefulLLMSpec, **options: Any) -> None:
        self.calls = CallEngine(spec, **options)
        self.spec = spec

    async def start(self) -> EngineInfo:
        return await self.calls.start()

    async def stop(self) -> None:
        await self.calls.stop()

    @property
    def ready(self) -> bool:
        return self.calls.ready

    @property
    def queue_time(self) -> Histogram:
        return self.calls.queue_time

    def metrics(self) -> dict[str, float]:
        return self.calls.metrics()

    def submit(self, token_ids: Sequence[int] | np.ndarray, params: SamplingParams) -> TokenStream:
        ids = np.asarray(token_ids, dtype=np.int64)
        job = StatefulGenerateJob(ids.tobytes(), params)
        return StatefulStream(self.calls.submit(job), int(ids.size))

    def submit_vision(self, prompt: str, images: Sequence[tuple[bytes, int | None]], params: SamplingParams,
                      prompt_tokens: int) -> TokenStream:
        job = StatefulVisionJob(prompt, tuple(data for data, _ in images), tuple(side for _, side in images), params)
        return StatefulStream(self.calls.submit(job), prompt_tokens)
