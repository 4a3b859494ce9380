"""OpenAI's text-to-speech request (``POST /v3/audio/speech``), declared.

:meth:`SpeechRequest.parse` validates the JSON body: a 400 naming the field for a value it does not take. What
depends on the served model (the voices, the bounds on ``input`` and ``speed``) is checked by the speech node
against its :class:`~ovserve.calculators.speech.model.TtsModel`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ovserve.errors import RequestError
from ovserve.request_body import parse_body

#: OpenAI's formats, as the ``response_format`` field names them.
ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
#: OpenAI's bounds on ``speed``.
MIN_SPEED, MAX_SPEED = 0.25, 4.0
#: OpenAI's longest ``input`` (characters); a graph option sets another.
DEFAULT_MAX_INPUT_CHARS = 4096
#: Fields accepted because they change nothing here (logged once when sent).
IGNORED_BY_DESIGN = frozenset({"user"})


class VoiceId(BaseModel):
    """OpenAI's custom voice reference, ``{"id": "voice_1234"}``: here the name of a voice the server lists."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=256)]


class SpeechRequest(BaseModel):
    """``POST /v3/audio/speech``. Every field of OpenAI's request is honoured, or refused by name when it would change
    the answer and cannot be honoured (``instructions``: the served models take no style prompt). ``stream_format``
    left out answers with the whole file; ``audio`` streams it sentence by sentence; ``sse`` sends
    ``speech.audio.delta`` events. ``language`` is OVMS's extension (Kokoro's phonemizer language)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str
    voice: Annotated[str, Field(max_length=256)] | VoiceId = "default"
    response_format: ResponseFormat = "mp3"
    speed: Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)] = 1.0
    instructions: Annotated[str, Field(max_length=DEFAULT_MAX_INPUT_CHARS)] | None = None
    stream_format: Literal["sse", "audio"] | None = None
    language: Annotated[str, Field(min_length=1, max_length=32)] | None = None

    @field_validator("input")
    @classmethod
    def _something_to_say(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the input is empty: give the text to speak")
        return value

    @field_validator("instructions")
    @classmethod
    def _no_instructions(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            raise ValueError("'instructions' cannot be honoured: the served speech models take no style prompt "
                             "(SpeechT5 and Kokoro speak in the voice of a speaker embedding only); leave it out")
        return value

    @property
    def voice_name(self) -> str:
        """The voice asked for, by name."""
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice

    @property
    def streamed(self) -> bool:
        return self.stream_format is not None

    @classmethod
    def parse(cls, data: Any) -> SpeechRequest:
        """The JSON body validated; a 400 naming the field otherwise. ``stream``, which the speech API does not have,
        is refused by name: a client that sends it expects a stream, which ``stream_format`` asks for."""
        if not isinstance(data, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        if "stream" in data:
            raise RequestError("the speech API has no 'stream' field: set stream_format to 'audio' (the file, sentence "
                               "by sentence) or 'sse' (speech.audio.delta events), or leave both out for the whole "
                               "file", param="stream", code="unknown_parameter")
        return parse_body(cls, data)
