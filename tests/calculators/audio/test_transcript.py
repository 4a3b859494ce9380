"""Whisper's results written in OpenAI's formats, read back by the official client; the request forms validated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from openai.types.audio import (
    Transcription,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
    Translation,
    TranslationVerbose,
)

from ovserve.calculators.audio.schema import WHISPER_LANGUAGES, TranscriptionForm, TranslationForm
from ovserve.calculators.audio.transcript import (
    Rendered,
    Segment,
    Transcript,
    TranscriptStream,
    Word,
    compression_ratio,
    render,
)
from ovserve.errors import RequestError

TINY_WHISPER = Path(__file__).resolve().parents[3] / "models" / "tiny" / "whisper"

LONG = Transcript(
    text=" Hello from a tiny model. Hello from a tiny model.", duration=40.2, language="en", temperature=0.2,
    segments=(Segment(0.0, 1.0, " Hello from a tiny model.", tokens=(2425, 490)),
              Segment(30.0, 31.0, " Hello from a tiny model.")),
    words=(Word(" Hello", 0.0, 0.4), Word(" from", 0.4, 0.6), Word(" a", 0.6, 0.7), Word(" tiny", 0.7, 0.85),
           Word(" model.", 0.85, 1.0)),
)


def client_for(rendered: Rendered, requests: list[httpx.Request] | None = None) -> openai.OpenAI:
    """The official client, validating strictly, answered with ``rendered`` whatever it asks."""
    def answer(request: httpx.Request) -> httpx.Response:
        if requests is not None:
            requests.append(request)
        body = rendered.body
        content = json.dumps(body) if isinstance(body, dict) else body
        return httpx.Response(200, content=content.encode(), headers={"content-type": rendered.media_type})

    return openai.OpenAI(base_url="http://test/v3", api_key="unused", max_retries=0, _strict_response_validation=True,
                         http_client=httpx.Client(transport=httpx.MockTransport(answer)))


def test_json_is_text_and_duration_usage_as_the_client_reads_it():
    result = client_for(render(LONG, "json")).audio.transcriptions.create(file=b"x", model="whisper")
    assert isinstance(result, Transcription)
    assert result.text == "Hello from a tiny model. Hello from a tiny model."
    assert result.usage is not None and result.usage.type == "duration" and result.usage.seconds == 41


def test_text_is_plain_text():
    rendered = render(LONG, "text")
    assert rendered.media_type.startswith("text/plain")
    result = client_for(rendered).audio.transcriptions.create(file=b"x", model="whisper", response_format="text")
    assert result == "Hello from a tiny model. Hello from a tiny model.\n"


def test_verbose_json_has_every_segment_field_and_no_words_unless_asked():
    rendered = render(LONG, "verbose_json")
    result = client_for(rendered).audio.transcriptions.create(file=b"x", model="whisper",
                                                              response_format="verbose_json")
    assert isinstance(result, TranscriptionVerbose)
    assert (result.language, result.duration, result.words) == ("english", 40.2, None)
    assert result.usage is not None and result.usage.seconds == 41
    assert rendered.body["task"] == "transcribe"
    first, second = result.segments or []
    assert (first.id, first.seek, first.start, first.end, first.text) == (0, 0, 0.0, 1.0, " Hello from a tiny model.")
    assert (second.id, second.seek, second.start, second.tokens) == (1, 3000, 30.0, [])  # the second 30-s window
    assert first.tokens == [2425, 490] and first.temperature == 0.2
    assert first.compression_ratio == pytest.approx(compression_ratio(" Hello from a tiny model."))
    assert (first.avg_logprob, first.no_speech_prob) == (0.0, 0.0)  # placeholders: GenAI does not report them


def test_words_only_when_word_granularity_is_asked():
    words_only = render(LONG, "verbose_json", frozenset({"word"})).body
    assert "segments" not in words_only
    both = render(LONG, "verbose_json", frozenset({"word", "segment"})).body
    parsed = TranscriptionVerbose.model_validate(both)
    assert [(w.word, w.start, w.end) for w in parsed.words or []][:2] == [("Hello", 0.0, 0.4), ("from", 0.4, 0.6)]
    assert len(parsed.segments or []) == 2


def test_translations_carry_no_usage_and_no_words():
    translated = Transcript(text=" Hello.", duration=2.0, language="de", task="translate")
    assert render(translated, "json").body == {"text": "Hello."}
    Translation.model_validate(render(translated, "json").body)
    body = render(translated, "verbose_json", frozenset({"word", "segment"})).body
    TranslationVerbose.model_validate(body)
    assert (body["task"], body["language"]) == ("translate", "german")
    assert "words" not in body and "usage" not in body
    assert [s["text"] for s in body["segments"]] == [" Hello."]  # one segment over the audio: no timestamps came


def test_srt_numbers_cues_with_comma_milliseconds_and_blank_lines():
    transcript = Transcript(text="", duration=3725.5, segments=(
        Segment(0.0, 1.5, " First line."), Segment(1.5, 2.0, "   "), Segment(3723.25, 3725.4996, " Last.")))
    assert render(transcript, "srt").body == (
        "1\n00:00:00,000 --> 00:00:01,500\nFirst line.\n\n"
        "2\n01:02:03,250 --> 01:02:05,500\nLast.\n")


def test_vtt_has_its_header_dot_milliseconds_and_a_blank_line_after_each_cue():
    rendered = render(LONG, "vtt")
    assert rendered.media_type.startswith("text/vtt")
    assert rendered.body == ("WEBVTT\n\n"
                             "00:00:00.000 --> 00:00:01.000\nHello from a tiny model.\n\n"
                             "00:00:30.000 --> 00:00:31.000\nHello from a tiny model.\n\n")
    result = client_for(rendered).audio.transcriptions.create(file=b"x", model="whisper", response_format="vtt")
    assert result == rendered.body


def test_subtitle_text_cannot_break_its_cue():
    nasty = Transcript(text="", duration=2.0, segments=(Segment(0.0, 2.0, " a <b>&</b> --> c\n\n\nd "),))
    assert render(nasty, "vtt").body == "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\na &lt;b&gt;&amp;&lt;/b&gt; -&gt; c\nd\n\n"
    srt_body = render(nasty, "srt").body
    assert srt_body == "1\n00:00:00,000 --> 00:00:02,000\na <b>&</b> -> c\nd\n"
    assert len(re.findall("-->", srt_body)) == 1


def test_no_segments_gives_one_cue_over_the_audio_and_no_text_gives_none():
    plain = Transcript(text=" Hi there.", duration=2.345)
    assert render(plain, "srt").body == "1\n00:00:00,000 --> 00:00:02,345\nHi there.\n"
    silent = Transcript(text="", duration=5.0)
    assert (render(silent, "srt").body, render(silent, "vtt").body, render(silent, "text").body) == ("", "WEBVTT\n\n", "")
    assert render(silent, "verbose_json").body["segments"] == []


def test_text_is_escaped_in_json():
    quoted = Transcript(text=' He said "stop" \\ then\nleft', duration=1.0)
    result = client_for(render(quoted, "json")).audio.transcriptions.create(file=b"x", model="whisper")
    assert result.text == 'He said "stop" \\ then\nleft'


def test_an_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError, match="expected json, text, srt, vtt or verbose_json"):
        render(LONG, "diarized_json")


def test_from_whisper_reads_genai_shaped_results():
    result = SimpleNamespace(texts=[" Hi."], chunks=[SimpleNamespace(start_ts=0.0, end_ts=1.0, text=" Hi.")],
                             words=[SimpleNamespace(word=" Hi.", start_ts=0.1, end_ts=0.9, token_ids=[1])])
    transcript = Transcript.from_whisper(result, 1.2, language="fr", temperature=0.5)
    assert transcript.segments == (Segment(0.0, 1.0, " Hi."),)
    assert transcript.words == (Word(" Hi.", 0.1, 0.9),)
    bare = Transcript.from_whisper(SimpleNamespace(texts=[" Hi."], chunks=None), 1.2)
    assert (bare.segments, bare.words, bare.text) == ((), None, " Hi.")


def sse_events(stream: str) -> list[dict[str, Any]]:
    assert stream.endswith("\n\n")
    blocks = stream.split("\n\n")[:-1]
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks)
    return [json.loads(block.removeprefix("data: ")) for block in blocks]


def test_stream_events_are_openai_deltas_then_done():
    stream = TranscriptStream()
    pieces = [stream.delta(p) for p in [" Hello", "", " from", " a \"tiny\"", " model."]]
    assert pieces[1] is None
    text = "".join(p for p in pieces if p) + stream.done(input_tokens=12, output_tokens=7)
    events = sse_events(text)
    deltas = [TranscriptionTextDeltaEvent.model_validate(e) for e in events[:-1]]
    done = TranscriptionTextDoneEvent.model_validate(events[-1])
    assert "".join(d.delta for d in deltas) == done.text == 'Hello from a "tiny" model.'
    assert done.usage is not None and (done.usage.type, done.usage.total_tokens) == ("tokens", 19)
    assert "usage" not in sse_events(TranscriptStream().done("x"))[0]


def test_the_client_reads_the_stream():
    stream = TranscriptStream()
    body = "".join(e for e in (stream.delta(" Hi"), stream.delta(" there.")) if e) + stream.done()
    client = client_for(Rendered(body, "text/event-stream"))
    events = list(client.audio.transcriptions.create(file=b"x", model="whisper", stream=True))
    assert [e.type for e in events] == ["transcript.text.delta", "transcript.text.delta", "transcript.text.done"]
    assert events[-1].text == "Hi there."


def form(**fields: str | list[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for name, value in fields.items():
        items += [(f"{name}[]", v) for v in value] if isinstance(value, list) else [(name, value)]
    return items


def refused(schema: type[TranscriptionForm] | type[TranslationForm], items: list[tuple[str, str]]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        schema.parse(items)
    assert caught.value.status == 400
    return caught.value


def test_a_transcription_form_as_the_client_sends_it():
    sent: list[httpx.Request] = []
    client_for(render(LONG, "verbose_json"), sent).audio.transcriptions.create(
        file=("a.wav", b"RIFF"), model="whisper", language="EN", prompt="Tiny.", temperature=0.4,
        response_format="verbose_json", timestamp_granularities=["word", "segment"])
    fields = [(k, v) for k, v in _multipart_fields(sent[0]) if k != "file"]
    parsed = TranscriptionForm.parse(fields)
    assert (parsed.model, parsed.language, parsed.prompt, parsed.temperature) == ("whisper", "en", "Tiny.", 0.4)
    assert parsed.granularities == {"word", "segment"} and parsed.stream is False


def _multipart_fields(request: httpx.Request) -> list[tuple[str, str]]:
    """The text fields of a multipart request, parsed with the standard library's email parser."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.read())
    return [(part.get_param("name", header="content-disposition"), part.get_content())
            for part in message.iter_parts() if part.get_filename() is None]


def test_form_defaults_and_granularities():
    parsed = TranscriptionForm.parse(form(model="w", stream="true"))
    assert (parsed.response_format, parsed.temperature, parsed.language, parsed.stream) == ("json", 0.0, None, True)
    assert parsed.granularities == {"segment"}
    assert TranscriptionForm.parse(form(model="w", language="jv")).language == "jw"  # ISO's Javanese, Whisper's token


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"language": "xx"}, "language", "ISO-639-1 language code that Whisper knows"),
    ({"language": "english"}, "language", "such as 'en'"),
    ({"temperature": "1.5"}, "temperature", "less than or equal to 1"),
    ({"temperature": "-0.1"}, "temperature", "greater than or equal to 0"),
    ({"response_format": "diarized_json"}, "response_format", "'json', 'text', 'srt', 'verbose_json' or 'vtt'"),
    ({"timestamp_granularities": ["word"]}, "timestamp_granularities", "needs response_format 'verbose_json'"),
    ({"timestamp_granularities": ["char"], "response_format": "verbose_json"}, "timestamp_granularities[0]", "'word' or 'segment'"),
    ({"stream": "true", "response_format": "srt"}, "stream", "use response_format 'json' or 'text'"),
    ({"stream": "maybe"}, "stream", "boolean"),
])
def test_bad_transcription_fields_are_refused_by_name(fields: dict[str, Any], param: str, says: str):
    error = refused(TranscriptionForm, form(model="w", **fields))
    assert error.param == param and says in error.message


def test_a_form_without_a_model_is_refused():
    assert refused(TranscriptionForm, form(language="en")).param == "model"


@pytest.mark.parametrize(("fields", "param"), [({"language": "de"}, "language"), ({"stream": "false"}, "stream"),
                                               ({"timestamp_granularities": ["word"]}, "timestamp_granularities")])
def test_translations_refuse_what_they_do_not_take_by_name(fields: dict[str, Any], param: str):
    error = refused(TranslationForm, form(model="w", **fields))
    assert (error.param, error.code) == (param, "unknown_parameter") and "always write English" in error.message


def test_a_translation_form():
    parsed = TranslationForm.parse(form(model="w", response_format="srt", temperature="0", prompt="p"))
    assert (parsed.response_format, parsed.temperature, parsed.prompt) == ("srt", 0.0, "p")


def test_the_language_table_is_whispers():
    """The tiny Whisper's generation config lists the 99 languages of multilingual Whisper; large-v3 adds yue."""
    lang_to_id = json.loads((TINY_WHISPER / "generation_config.json").read_text())["lang_to_id"]
    codes = {token.strip("<|>") for token in lang_to_id}
    assert set(WHISPER_LANGUAGES) - codes == {"yue"} and codes <= set(WHISPER_LANGUAGES)
