"""The text-to-speech model of a graph: a speech engine process, its voices, and what requests are checked against.

``TextToSpeechModel`` is the resource of OVMS's ``T2sCalculator`` node (its options are ``T2sCalculatorOptions``);
``TtsTextToSpeechModel`` takes the same options under the node's first name, ``TtsCalculatorOptions``. Both start
one engine process (:mod:`ovserve.engine.tts_kind`) and hand the speech node a :class:`TtsModel`.

**Voices** are speaker embeddings by name. They come, later ones replacing earlier ones of the same name, from the
model folder's ``voices/`` (each ``NAME.bin``, as OVMS and Kokoro's exports lay them out), the node's ``voices``
(``{ name path }``, paths relative to the graph file; ``ovserve serve --voice NAME=PATH`` adds to them), and each
may be a raw little-endian float32 file (``.bin``, as OVMS and GenAI's samples write them) or a NumPy ``.npy``. The
engine checks each against the shape the model takes when it loads. One voice is called ``default``: the one listed
under that name, else SpeechT5's built-in speaker (GenAI's), else, for a model without one (Kokoro), the first voice
by name. ``voice_aliases`` (``{ name voice }``; ``--voice-alias ALIAS=VOICE``) give voices more names, such as
OpenAI's ``alloy``; a request for any other name gets a 400 that lists the known ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.calculators.engine_resource import DeviceOptions, EngineBacked, HoldsRequests, require_pyav
from ovserve.calculators.speech.schema import DEFAULT_MAX_INPUT_CHARS, MAX_SPEED, MIN_SPEED
from ovserve.calculators.speech.sentences import DEFAULT_MAX_CHARS
from ovserve.engine.call_client import CallEngine
from ovserve.engine.process import DEFAULT_STEP_TIMEOUT
from ovserve.engine.tts_kind import SpeechSpec
from ovserve.errors import RequestError
from ovserve.store.catalog import models_path_in_graph, speech_model_type

log = logging.getLogger("ovserve.calculators")

#: What a request may hold of a model by default: this many requests at once (each keeps at most two sentences in
#: the engine: the one being spoken and the next).
DEFAULT_MAX_QUEUED_REQUESTS = 4
#: The name of the voice a request that names none gets.
DEFAULT_VOICE = "default"
#: The file kinds a voice may be.
VOICE_SUFFIXES = (".bin", ".npy")


class VoiceFile(BaseModel):
    """OVMS's ``T2sCalculatorOptions.SpeakerEmbeddings``: a voice's name and its speaker embedding file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    path: str = Field(min_length=1, description="a .bin (raw float32) or .npy file, relative to the graph file")


class VoiceAlias(BaseModel):
    """ovserve's own: another ``name`` for a ``voice`` (OpenAI's ``alloy`` for ``default``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    voice: str = Field(min_length=1, max_length=256)


class T2sCalculatorOptions(DeviceOptions):
    """OVMS's ``mediapipe.T2sCalculatorOptions`` (``models_path``, ``target_device``, ``plugin_config``, ``voices``,
    ``speed_min``, ``speed_max``; the older ``device`` for ``target_device``), plus ovserve's own."""

    model_config = ConfigDict(extra="forbid")

    models_path: str = Field(description="a text-to-speech IR folder (SpeechT5 with its vocoder, or Kokoro), "
                                         "relative to the graph file, or a model in the store")
    voices: list[VoiceFile] = Field(default_factory=list, description="speaker embeddings by name")
    speed_min: float = Field(MIN_SPEED, ge=MIN_SPEED, le=MAX_SPEED, description="the lowest 'speed' taken")
    speed_max: float = Field(MAX_SPEED, ge=MIN_SPEED, le=MAX_SPEED, description="the highest 'speed' taken")
    voice_aliases: list[VoiceAlias] = Field(default_factory=list, description="ovserve's own: more names for voices")
    max_input_chars: int = Field(DEFAULT_MAX_INPUT_CHARS, ge=1, le=1_000_000, description="ovserve's own: the "
                                 "longest 'input' taken, in characters")
    max_sentence_chars: int = Field(DEFAULT_MAX_CHARS, ge=16, le=500, description="ovserve's own: longer sentences "
                                    "are said in parts of at most this many characters")
    max_queued_requests: int = Field(DEFAULT_MAX_QUEUED_REQUESTS, ge=1, description="ovserve's own: the most "
                                     "requests the model holds at once; more get 503 with Retry-After")
    engine_step_timeout: float = Field(DEFAULT_STEP_TIMEOUT, ge=0, description="ovserve's own: seconds without word "
                                       "from the engine, with requests in flight, after which it is restarted (0: "
                                       "never)")

    @model_validator(mode="after")
    def _speeds_in_order(self) -> T2sCalculatorOptions:
        if not self.speed_min <= self.speed_max:
            raise ValueError(f"speed_min ({self.speed_min:g}) must be at most speed_max ({self.speed_max:g})")
        return self


class TtsCalculatorOptions(T2sCalculatorOptions):
    """The same options under OVMS's first name (``TtsCalculator`` nodes)."""


@dataclass
class TtsModel(HoldsRequests):
    """What the speech node needs of the model: its engine, its voices (every name a request may use, aliases
    included, and the voice each stands for; ``None``: the model's built-in speaker), the bounds requests are held
    to, and a count of the requests it holds."""

    #: What this side packet makes its graph serve (:attr:`~ovserve.server.servables.Servable.kind`).
    model_kind: ClassVar[str] = "text2speech"

    engine: CallEngine
    voices: dict[str, str | None]
    model_type: str = "speecht5"
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    max_sentence_chars: int = DEFAULT_MAX_CHARS
    speed_range: tuple[float, float] = (MIN_SPEED, MAX_SPEED)
    max_held: int = DEFAULT_MAX_QUEUED_REQUESTS
    held: int = field(default=0)


    def voice(self, name: str) -> str | None:
        """The voice (an engine voice name, ``None`` for the built-in speaker) a request's ``voice`` stands for; a 400
        naming ``voice`` and listing the known ones otherwise."""
        if name not in self.voices:
            raise RequestError(f"unknown voice '{name}'; this model speaks in the voices "
                               f"{', '.join(sorted(self.voices))}", param="voice", code="invalid_value")
        return self.voices[name]


def voice_files(folder: Path, base_path: Path, listed: list[VoiceFile]) -> dict[str, Path]:
    """Every voice's file by name: the model folder's ``voices/`` first, then the listed ones (relative to the graph
    file), which replace those of the same name. A listed file that is missing or of another kind fails the load."""
    found: dict[str, Path] = {}
    shipped = folder / "voices"
    if shipped.is_dir():
        for path in sorted(shipped.iterdir()):
            if path.is_file() and path.suffix in VOICE_SUFFIXES:
                found[path.stem] = path
    for voice in listed:
        path = Path(voice.path).expanduser()
        path = path if path.is_absolute() else base_path / path
        if not path.is_file():
            raise FileNotFoundError(f"the voice '{voice.name}': no speaker embedding file at {path}")
        if path.suffix not in VOICE_SUFFIXES:
            raise ValueError(f"the voice '{voice.name}': {path} is neither a .bin (raw float32) nor a .npy file")
        found[voice.name] = path
    return found


def voice_names(files: dict[str, Path], aliases: list[VoiceAlias], model_type: str) -> dict[str, str | None]:
    """Every name a request may use, with the engine voice it stands for (see the module's docstring)."""
    names: dict[str, str | None] = {name: name for name in files}
    if DEFAULT_VOICE not in names:
        if model_type == "speecht5":
            names[DEFAULT_VOICE] = None
        elif files:
            names[DEFAULT_VOICE] = min(files)
        else:
            raise ValueError("this model has no built-in speaker: list at least one voice (a 'voices' entry, "
                             "--voice NAME=PATH, or .bin files in the model's voices/ folder)")
    for alias in aliases:
        if alias.voice not in names:
            raise ValueError(f"the voice alias '{alias.name}' names the voice '{alias.voice}', which is not listed; "
                             f"voices: {', '.join(sorted(names))}")
        if alias.name in files:
            raise ValueError(f"the voice alias '{alias.name}' is the name of a voice already; choose another")
        names[alias.name] = names[alias.voice]
    return names


class TextToSpeechModel(EngineBacked, Resource):
    """Starts the speech engine process for ``models_path`` with its voices, and provides it, with what requests are
    checked against, as ``SPEECH``."""

    SPEECH = SideOutput(TtsModel, doc="the speech engine, the model's voices and its bounds")

    Options = T2sCalculatorOptions
    options_type = "mediapipe.T2sCalculatorOptions"

    async def open(self, ctx: ResourceContext) -> None:
        options: T2sCalculatorOptions = ctx.options
        require_pyav("text to speech encodes its audio")
        folder = models_path_in_graph(ctx.base_path, options.models_path)
        model_type = speech_model_type(folder)
        if model_type is None:
            raise FileNotFoundError(f"models_path '{folder}' is not a text-to-speech OpenVINO IR folder (SpeechT5: "
                                    f"config.json with SpeechT5ForTextToSpeech and openvino_encoder_model.xml, "
                                    f"decoder, postnet, vocoder and tokenizer; Kokoro: openvino_model.xml)")
        files = voice_files(folder, ctx.base_path, options.voices)
        names = voice_names(files, options.voice_aliases, model_type)
        spec = SpeechSpec(str(folder), options.chosen_device, dict(options.plugin_config),
                          2 * options.max_queued_requests,
                          tuple((name, str(path)) for name, path in sorted(files.items())))
        self.engine = CallEngine(spec, step_timeout=options.engine_step_timeout or None)
        await self.engine.start()
        log.info("%s: text to speech (%s) on %s, voices: %s", folder.name, model_type, spec.device,
                 ", ".join(f"{name} (= {voice or 'built-in'})" if voice != name else name
                           for name, voice in sorted(names.items())))
        ctx.set(self.SPEECH, TtsModel(self.engine, names, model_type, options.max_input_chars,
                                         options.max_sentence_chars, (options.speed_min, options.speed_max),
                                         options.max_queued_requests))



class TtsTextToSpeechModel(TextToSpeechModel):
    """:class:`TextToSpeechModel` for graphs of OVMS's first ``TtsCalculator`` node (``TtsCalculatorOptions``)."""

    Options = TtsCalculatorOptions
    options_type = "mediapipe.TtsCalculatorOptions"
