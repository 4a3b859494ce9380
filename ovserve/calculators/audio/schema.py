"""The OpenAI speech-to-text request forms (``/v3/audio/transcriptions`` and ``/translations``), declared.

The endpoint parses the multipart form, keeps the ``file`` part for :func:`ovserve.calculators.audio.decode.
decode_audio`, and hands the other fields, as ``(name, value)`` pairs, to :meth:`TranscriptionForm.parse` or
:meth:`TranslationForm.parse`: a 400 naming the field for any value these do not take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ovserve.endpoints import form_fields
from ovserve.errors import RequestError
from ovserve.request_body import parse_body

#: The languages Whisper knows: its language tokens (``<|en|>``), ISO-639-1 codes where one exists, and the names
#: OpenAI's ``verbose_json`` reports. Multilingual Whisper checkpoints know the first 99; large-v3 adds ``yue``.
WHISPER_LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
#: ISO-639-1 codes that Whisper spells otherwise (Javanese is ``jv`` in ISO, ``jw`` in Whisper's tokens).
LANGUAGE_ALIASES = {"jv": "jw"}

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]
#: Form fields sent once per value, with OpenAI's ``[]`` suffix (``timestamp_granularities[]=word``).
LIST_FIELDS = ("timestamp_granularities", "include")
#: Prompts longer than this are refused (Whisper reads at most 224 prompt tokens: the rest would be cut anyway).
MAX_PROMPT_CHARS = 10_000


#: OpenAI's fields that would change the answer and that Whisper cannot honour, with why (a 400 names them when set).
UNSERVED = {
    "known_speaker_names": "speaker diarization needs a diarization model; Whisper does not tell speakers apart",
    "known_speaker_references": "speaker diarization needs a diarization model; Whisper does not tell speakers apart",
}
#: Fields accepted because they change nothing here (logged once when sent).
IGNORED_BY_DESIGN = frozenset({"user"})


class _AudioForm(BaseModel):
    """What both speech-to-text forms take. Unknown fields are accepted and logged once, as unknown chat fields are;
    OpenAI's fields that would change the answer are honoured or refused by name."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] = 0.0
    response_format: ResponseFormat = "json"
    #: OpenAI's ``include[]``: only ``logprobs`` exists, and GenAI's Whisper gives none.
    include: list[Literal["logprobs"]] | None = None
    #: OpenAI's ``chunking_strategy``: ``auto`` (Whisper reads 30-second windows anyway); server VAD is not done.
    chunking_strategy: Literal["auto"] | None = None

    @field_validator("include", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("include")
    @classmethod
    def _no_logprobs(cls, value: list[str] | None) -> list[str] | None:
        if value:
            raise ValueError("'logprobs' cannot be included: OpenVINO GenAI's Whisper gives no token log-probabilities")
        return value

    @model_validator(mode="after")
    def _served(self) -> _AudioForm:
        for name in (self.model_extra or {}):
            if name in UNSERVED:
                raise RequestError(f"'{name}' is not served: {UNSERVED[name]}", param=name,
                                   code="unsupported_parameter")
        return self


class TranscriptionForm(_AudioForm):
    """``POST /v3/audio/transcriptions``: speech in its own language. ``language`` is a Whisper language code
    (ISO-639-1 such as ``en``; detected when absent); ``timestamp_granularities`` needs ``verbose_json`` and
    defaults to segments; ``stream`` sends ``transcript.text`` events, so it takes ``json`` or ``text``."""

    language: str | None = None
    timestamp_granularities: list[Granularity] | None = None
    stream: bool = False

    @field_validator("timestamp_granularities", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("language")
    @classmethod
    def _whisper_language(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        code = value.strip().lower()
        code = LANGUAGE_ALIASES.get(code, code)
        if code not in WHISPER_LANGUAGES:
            raise ValueError("expected an ISO-639-1 language code that Whisper knows, such as 'en', 'de' or 'zh' "
                             f"(one of {', '.join(sorted(WHISPER_LANGUAGES))})")
        return code

    @model_validator(mode="after")
    def _formats_fit(self) -> TranscriptionForm:
        if self.timestamp_granularities and self.response_format != "verbose_json":
            raise RequestError("'timestamp_granularities' needs response_format 'verbose_json' (got "
                               f"{self.response_format!r})", param="timestamp_granularities", code="invalid_value")
        if self.stream and self.response_format not in ("json", "text"):
            raise RequestError(f"'stream' sends text events: use response_format 'json' or 'text' (got "
                               f"{self.response_format!r}), or do not stream", param="stream", code="invalid_value")
        return self

    @property
    def granularities(self) -> frozenset[str]:
        """The timestamps asked for: segments unless the request names others."""
        return frozenset(self.timestamp_granularities or ["segment"])

    @classmethod
    def parse(cls, items: Iterable[tuple[str, str]]) -> TranscriptionForm:
        """The form's text fields validated; a 400 naming the field otherwise."""
        return cls.from_fields(form_fields(items, LIST_FIELDS))

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> TranscriptionForm:
        """The form fields gathered (:func:`~ovserve.endpoints.form_fields`), validated; else a 400 naming the field."""
        return parse_body(cls, dict(fields))


class TranslationForm(_AudioForm):
    """``POST /v3/audio/translations``: speech in any language, written in English. It takes no ``language`` (the
    target is English), no ``timestamp_granularities`` and no ``stream``: each is refused by name, as OpenAI's
    translations do not have them."""

    @classmethod
    def parse(cls, items: Iterable[tuple[str, str]]) -> TranslationForm:
        """The form's text fields validated; a 400 naming the field otherwise."""
        return cls.from_fields(form_fields(items, LIST_FIELDS))

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> TranslationForm:
        """The form fields gathered (:func:`~ovserve.endpoints.form_fields`), validated; else a 400 naming the field."""
        for name in ("language", "timestamp_granularities", "stream"):
            if name in fields:
                raise RequestError(f"translations take no '{name}': they always write English text, without "
                                   "word timestamps or streaming; use /audio/transcriptions for that",
                                   param=name, code="unknown_parameter")
        return parse_body(cls, dict(fields))
