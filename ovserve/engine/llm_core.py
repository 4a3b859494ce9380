"""The text generation kind's core in the engine process: a ContinuousBatchingPipeline stepped over every request.

``ContinuousBatchingPipeline.step()`` holds the GIL for a whole step, so it runs in the engine process, never beside
the HTTP event loop. Its job is a :class:`GenerateJob`; each step reports every request's new token ids (and their
log-probabilities, for requests that asked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ovserve.engine.devices import check_device, checked_device  # noqa: F401 (their old home)
from ovserve.engine.kinds import EngineCore
from ovserve.engine.protocol import FINISH_LENGTH, FINISH_STOP, SamplingParams
from ovserve.engine.scheduler_options import apply_scheduler_options
from ovserve.engine.vision import VisionGenerateJob, add_vision_request

#: Steps after which a cancelled request's handle is let go. OpenVINO GenAI frees a cancelled request within
#: its next two steps, but leaves its status at CANCEL whenever other requests are scheduled (measured on
#: 2026.4: ``tests/engine/test_engine_client.py``), so waiting for the status to change would hold the handle,
#: and keep the loop stepping, forever.
RELEASE_STEPS = 2


@dataclass(frozen=True, slots=True)
class GenerateJob:
    """A request to generate for: its prompt as int64 token ids' bytes, and its settings."""

    token_ids: bytes
    params: SamplingParams


class LLMCore(EngineCore):
    """Owns the pipeline and every live request's handle (a dropped handle drops the request)."""

    waits_for_replacements = True

    def __init__(self, pipeline: Any, vision: bool = False) -> None:
        super().__init__()
        #: A VLM's pipeline takes text prompts only: a prompt of token ids failed the next step (GenAI 2026.4: "Port
        #: for tensor name input_ids was not found"), which ends every request in flight.
        self.vision = vision
        import numpy
        import openvino
        import openvino_genai

        self.numpy = numpy
        self.pipeline = pipeline
        self.handles: dict[int, Any] = {}
        self.tensor = openvino.Tensor
        self.running = openvino_genai.GenerationStatus.RUNNING
        self.finished = openvino_genai.GenerationStatus.FINISHED
        self.cancelled = openvino_genai.GenerationStatus.CANCEL
        self.reason_stop = openvino_genai.GenerationFinishReason.STOP
        self.reason_length = openvino_genai.GenerationFinishReason.LENGTH
        self.wants_logprobs: set[int] = set()
        #: How many more tokens each request may have (its max_new_tokens less those it has had).
        self.room: dict[int, int] = {}
        #: Cancelled requests whose handles are kept until the pipeline has let them go: id → steps at the abort.
        self.aborted: dict[int, int] = {}
        #: Requests added and not yet seen scheduled: id → when added (in order).
        self.unscheduled: dict[int, float] = {}
        #: KV cache in use at the last step, percent (as the pipeline reports it).
        self.cache_percent = 0.0

    # --- the core's interface ----------------------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self.handles) - len(self.aborted)

    @property
    def held(self) -> int:
        return len(self.handles)

    @property
    def busy(self) -> bool:
        busy = self.live > 0 or self.pipeline.has_non_finished_requests()
        if not busy:
            for request_id in list(self.aborted):  # the pipeline holds nothing: none of them is running
                self.release(request_id)
        return busy

    def request_ids(self) -> list[int]:
        return list(self.handles)

    def stats(self) -> dict[str, float]:
        return {"cache_usage": self.cache_percent}

    def add(self, request_id: int, job: Any) -> None:
        if not isinstance(job, GenerateJob | VisionGenerateJob):
            self.outputs.append((request_id, (), f"error: a text generation engine cannot run a {type(job).__name__}"))
            return
        if self.vision != isinstance(job, VisionGenerateJob):
            what = "takes prompts as text (a VisionGenerateJob)" if self.vision else "takes no images"
            self.outputs.append((request_id, (), f"error: this model's engine {what}"))
            return
        params = job.params
        try:
            if isinstance(job, VisionGenerateJob):  # a VLM's prompt is text, its images beside it
                handle = add_vision_request(self.pipeline, request_id, job)
            else:
                ids = self.numpy.frombuffer(job.token_ids, dtype=self.numpy.int64).reshape(1, -1)
                handle = self.pipeline.add_request(request_id, self.tensor(ids), params.to_generation_config())
        except Exception as error:  # one bad request must not stop the engine
            self.outputs.append((request_id, (), f"error: {type(error).__name__}: {error}"))
            return
        self.handles[request_id] = handle
        self.room[request_id] = params.max_new_tokens
        self.unscheduled[request_id] = time.monotonic()
        if params.logprobs:
            self.wants_logprobs.add(request_id)
        self.added += 1

    def abort(self, request_id: int) -> None:
        """Cancel a request. Its handle is kept until the pipeline has released it."""
        handle = self.handles.get(request_id)
        if handle is not None and request_id not in self.aborted:
            handle.cancel()
            self.aborted[request_id] = self.steps
            self.unscheduled.pop(request_id, None)

    def work(self) -> None:
        """One engine step, then every request's news. A failed step leaves the pipeline unusable (OpenVINO GenAI
        cannot step again): the requests in flight fail, and :attr:`failed` says why."""
        try:
            self.steps += 1
            step_started = time.monotonic()
            self.pipeline.step()
        except Exception as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            for request_id in list(self.handles):
                self.outputs.append((request_id, (), f"error: engine step failed: {reason}"))
            self.handles.clear()
            self.aborted.clear()
            self.failed = reason
        else:
            self.after_step(step_started)
            self.collect()

    def stop(self) -> None:
        super().stop()
        self.drain()

    # --- stepping ----------------------------------------------------------------------------------------

    def after_step(self, step_started: float) -> None:
        """Read the pipeline's metrics once per step: the KV cache in use (percent), and how long the requests
        the engine began on in this step had waited since they were added.

        The pipeline does not say which requests it scheduled, only how many of all it holds
        (``requests - scheduled_requests`` wait); it takes waiting requests first come, first served, so
        the oldest of those not seen scheduled yet are the ones it began on. An estimate: a running request
        the scheduler pauses for want of KV cache counts as waiting too."""
        try:
            metrics = self.pipeline.get_metrics()
            self.cache_percent = float(metrics.cache_usage)
            scheduled = int(metrics.scheduled_requests)
            waiting = max(0, int(metrics.requests) - scheduled)
        except Exception:  # metrics must never stop the engine
            return
        if scheduled == 0:
            self.idle_steps += 1
        for _ in range(len(self.unscheduled) - waiting):
            request_id = next(iter(self.unscheduled))
            self.queued.append(max(0.0, step_started - self.unscheduled.pop(request_id)))

    def release(self, request_id: int) -> None:
        """Let go of a request's handle and what the core keeps about it."""
        del self.handles[request_id]
        self.aborted.pop(request_id, None)
        self.unscheduled.pop(request_id, None)
        self.wants_logprobs.discard(request_id)
        self.room.pop(request_id, None)

    def collect(self) -> None:
        for request_id, handle in list(self.handles.items()):
            new_ids, new_logprobs, finish = self.read(request_id, handle)
            status = handle.get_status()
            aborted_at = self.aborted.get(request_id)
            if aborted_at is not None:
                if status not in (self.running, self.cancelled) or self.steps - aborted_at >= RELEASE_STEPS:
                    self.release(request_id)
                continue  # the client already ended it
            room = self.room[request_id]
            if len(new_ids) > room or (len(new_ids) == room and finish is None):
                # All the tokens it may have. With prompt lookup, OpenVINO GenAI 2026.4 can accept proposed tokens
                # past max_new_tokens (measured: 69 tokens for 64, n 20 with 16 proposed a step): cut them here.
                del new_ids[room:]
                if new_logprobs is not None:
                    del new_logprobs[room:]
                finish = FINISH_LENGTH
                self.end(request_id, status)
            elif status != self.running or finish is not None:  # ended: once, whichever the engine said first
                self.end(request_id, status)
                if finish is None:
                    finish = FINISH_STOP if status == self.finished else f"error: the engine ended it ({status.name})"
            else:
                self.room[request_id] = room - len(new_ids)
            if new_ids or finish is not None:
                self.outputs.append((request_id, (new_ids, new_logprobs) if new_logprobs is not None else new_ids,
                                     finish))

    def end(self, request_id: int, status: Any) -> None:
        """A request has its answer: the pipeline lets a running one go at its next steps, a finished one now."""
        self.completed += 1
        if status == self.running:
            self.abort(request_id)
        else:
            self.release(request_id)

    def read(self, request_id: int, handle: Any) -> tuple[list[int], list[float] | None, str | None]:
        """A request's new tokens since the last step, their log-probabilities (if it asked) and how the engine
        says it finished (``None`` while it runs)."""
        new_ids: list[int] = []
        new_logprobs: list[float] | None = [] if request_id in self.wants_logprobs else None
        finish = None
        while handle.can_read():
            for output in handle.read().values():
                new_ids.extend(output.generated_ids)
                if new_logprobs is not None:
                    new_logprobs.extend(output.generated_log_probs)
                if output.finish_reason == self.reason_stop:
                    finish = FINISH_STOP
                elif output.finish_reason == self.reason_length:
                    finish = FINISH_LENGTH
        return new_ids, new_logprobs, finish

    def drain(self) -> None:
        """Step until the pipeline has let every (cancelled) request go, and once more: a cancelled request keeps
        its KV blocks until the step after, and the pipeline logs what it still holds as leaked when it goes."""
        if self.failed is None:
            for _ in range(1000):
                if not self.pipeline.has_non_finished_requests():
                    break
                self.pipeline.step()
            if self.added:
                self.pipeline.step()
        self.handles.clear()
        self.aborted.clear()


def load_llm(settings: Any) -> LLMCore:
    """The core for :class:`~ovserve.engine.settings.EngineSettings`: its ContinuousBatchingPipeline, loaded."""
    return LLMCore(load_pipeline(settings), vision=settings.model.vision)


def load_pipeline(settings: Any) -> Any:
    """The ContinuousBatchingPipeline of :class:`~ovserve.engine.settings.EngineSettings` (benchmarks use it bare)."""
    import openvino_genai

    scheduler = openvino_genai.SchedulerConfig()
    scheduler.cache_size = settings.cache_size
    scheduler.max_num_seqs = settings.max_num_seqs
    scheduler.max_num_batched_tokens = settings.max_num_batched_tokens
    scheduler.enable_prefix_caching = settings.enable_prefix_caching
    scheduler.dynamic_split_fuse = settings.dynamic_split_fuse
    apply_scheduler_options(scheduler, settings.cache_eviction, settings.sparse_attention)
    plugin_config = dict(settings.plugin_config)
    if settings.draft is not None:
        checked_device(settings.draft.device)
        plugin_config["draft_model"] = settings.draft.genai()
    return openvino_genai.ContinuousBatchingPipeline(
        str(settings.model.path), scheduler, checked_device(settings.device), plugin_config)
