"""The speech-to-text model of a graph: a Whisper engine process, and what the server checks requests against.

``WhisperModel`` is the resource of OVMS's ``S2tCalculator`` node (its options are ``S2tCalculatorOptions``);
``SttWhisperModel`` takes the same options under the node's older name, ``SttCalculatorOptions``. Both start one
engine process (:mod:`ovserve.engine.whisper_kind`) and hand the speech node a :class:`SpeechModel`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import ConfigDict, Field

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.calculators.audio.decode import DEFAULT_MAX_SECONDS, MAX_UPLOAD_BYTES, AudioLimits
from ovserve.calculators.engine_resource import DeviceOptions, EngineBacked, HoldsRequests, require_pyav
from ovserve.engine.call_client import CallEngine
from ovserve.engine.folder_spec import DEFAULT_MAX_QUEUED
from ovserve.engine.process import DEFAULT_STEP_TIMEOUT
from ovserve.engine.whisper_kind import WhisperSpec
from ovserve.store.catalog import WHISPER_FILES, models_path_in_graph

log = logging.getLogger("ovserve.calculators")



class S2tCalculatorOptions(DeviceOptions):
    """OVMS's ``mediapipe.S2tCalculatorOptions`` (``models_path``, ``target_device``, ``plugin_config``,
    ``enable_word_timestamps``; the older ``device`` for ``target_device``), plus ovserve's own bounds."""

    model_config = ConfigDict(extra="forbid")

    models_path: str = Field(description="a Whisper IR folder (openvino_encoder_model.xml, openvino_decoder_model.xml, "
                                         "tokenizer, detokenizer), relative to the graph file, or a model in the store")
    enable_word_timestamps: bool = Field(False, description="build the pipeline so that requests may ask for word "
                                                            "timestamps (timestamp_granularities[]=word)")
    max_queued_requests: int = Field(DEFAULT_MAX_QUEUED, ge=1, description="ovserve's own: the most requests the model "
                                     "holds at once, decoding, running or waiting; more get 503 with Retry-After")
    max_file_bytes: int = Field(MAX_UPLOAD_BYTES, ge=1, description="ovserve's own: the largest audio file taken (413 "
                                                                    "above it)")
    max_audio_seconds: float = Field(DEFAULT_MAX_SECONDS, gt=0, description="ovserve's own: the longest audio taken")
    engine_step_timeout: float = Field(DEFAULT_STEP_TIMEOUT, ge=0, description="ovserve's own: seconds without word "
                                       "from the engine, with requests in flight, after which it is restarted (0: "
                                       "never)")



class SttCalculatorOptions(S2tCalculatorOptions):
    """The same options under OVMS's older name (``SttCalculator`` nodes)."""


@dataclass
class SpeechModel(HoldsRequests):
    """What the speech node needs of the model: its engine, the language codes it knows (``None``: an English-only
    model), whether it translates and gives word timestamps, the limits on uploads, and a bound on the requests it
    holds (decoding their audio, or in the engine)."""

    #: What this side packet makes its graph serve (:attr:`~ovserve.server.servables.Servable.kind`).
    model_kind: ClassVar[str] = "speech2text"

    engine: CallEngine
    languages: frozenset[str] | None
    translates: bool
    word_timestamps: bool
    limits: AudioLimits
    max_held: int
    held: int = field(default=0)



def read_languages(folder: Path) -> tuple[frozenset[str] | None, bool]:
    """The language codes a Whisper model knows and whether it translates, from its ``generation_config.json``
    (``lang_to_id`` keys such as ``<|en|>``, ``task_to_id``). English-only models have neither: ``(None, False)``."""
    try:
        config = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    codes = frozenset(key.strip("<|>") for key in config.get("lang_to_id") or {})
    if not codes or config.get("is_multilingual") is False:
        return None, False
    return codes, "translate" in (config.get("task_to_id") or {})


class WhisperModel(EngineBacked, Resource):
    """Starts the Whisper engine process for ``models_path`` and provides it, with what requests are checked
    against, as ``WHISPER``."""

    WHISPER = SideOutput(SpeechModel, doc="the Whisper engine and the model's languages and limits")

    Options = S2tCalculatorOptions
    options_type = "mediapipe.S2tCalculatorOptions"

    async def open(self, ctx: ResourceContext) -> None:
        options: S2tCalculatorOptions = ctx.options
        require_pyav("speech to text decodes uploads")
        folder = models_path_in_graph(ctx.base_path, options.models_path)
        missing = [name for name in WHISPER_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"models_path '{folder}' is not a Whisper OpenVINO IR folder (missing "
                                    f"{', '.join(missing)}); 'ovserve pull OpenVINO/whisper-base-fp16-ov' fetches one")
        languages, translates = read_languages(folder)
        spec = WhisperSpec(str(folder), options.chosen_device, dict(options.plugin_config),
                           max_queued=options.max_queued_requests, word_timestamps=options.enable_word_timestamps)
        self.engine = CallEngine(spec, step_timeout=options.engine_step_timeout or None)
        await self.engine.start()
        log.info("%s: speech to text on %s, %s, word timestamps %s", folder.name, spec.device,
                 f"{len(languages)} languages" if languages else "English only",
                 "on" if options.enable_word_timestamps else "off")
        limits = AudioLimits(options.max_file_bytes, options.max_audio_seconds)
        ctx.set(self.WHISPER, SpeechModel(self.engine, languages, translates, options.enable_word_timestamps, limits,
                                          options.max_queued_requests))



class SttWhisperModel(WhisperModel):
    """:class:`WhisperModel` for graphs of OVMS's older ``SttCalculator`` node (``SttCalculatorOptions``)."""

    Options = SttCalculatorOptions
    options_type = "mediapipe.SttCalculatorOptions"
