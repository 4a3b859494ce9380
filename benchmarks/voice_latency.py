"""Time to the first audio byte of a spoken answer: the voice graph against a client that makes three calls.

One server serves four graphs on the same models: ``graphs/voice.pbtxt`` (speech to text, the LLM and text to speech
in one graph) and the three single-model graphs (``speech2text``, ``llm``, ``text2speech``). For each run, the same
recording is answered in speech twice, one way after the other:

- **voice graph**: one streamed chat completion with an ``input_audio`` part and ``modalities: ["text", "audio"]``;
  the first audio byte is the first ``delta.audio.data`` chunk.
- **three calls**: ``/audio/transcriptions``, then a (unary) chat completion on the transcript, then
  ``/audio/speech`` with ``stream_format: "audio"``; the first audio byte is the speech response's first byte.

Both clocks start just before the upload (a few hundred kB over loopback: a millisecond or two) and stop at the
first audio byte; the time to the last audio byte is reported too. The LLM answers greedily with the same
``max_tokens``, so both ways speak the same text. Medians of ``--runs`` runs, and their ratio.

    python -m benchmarks.voice_latency                       # the tiny committed speech models and SmolLM2
    python -m benchmarks.voice_latency --whisper DIR --llm MODEL --speech DIR --voice-file speaker.bin
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.peers import HOST, ServerSpec, free_port, running
from benchmarks.report import machine_info
from benchmarks.tables import markdown

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "models" / "tiny"
SYSTEM = "You are a voice assistant. Answer in two or three short sentences."


def graph(name: str, models: dict[str, str], voice_file: Path | None) -> str:
    """``graphs/NAME.pbtxt`` with every models_path set to the chosen model (and the speech model's voice)."""
    text = (REPO / "graphs" / f"{name}.pbtxt").read_text()
    for listed, path in models.items():
        text = text.replace(f'models_path: "{listed}"', f'models_path: "{path}"')
    if voice_file is not None:
        text = text.replace(f'models_path: "{models["speecht5-tts"]}"',
                            f'models_path: "{models["speecht5-tts"]}"\n      voices {{ name: "default" path: '
                            f'"{voice_file}" }}')
    return text


def recording(seconds: float) -> bytes:
    """A wav of a tone (the tiny Whisper hears the same words in anything; a real one hears nothing in it)."""
    import io

    import av
    import numpy as np

    rate = 16_000
    tone = (0.3 * np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 220 / rate)).astype(np.float32)
    out = io.BytesIO()
    with av.open(out, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def voice_graph_call(client: httpx.Client, wav: bytes, max_tokens: int) -> tuple[float, float, str]:
    """(seconds to the first audio byte, to the last, the transcript spoken) through the voice graph."""
    body = {"model": "voice", "stream": True, "max_tokens": max_tokens, "temperature": 0,
            "modalities": ["text", "audio"], "audio": {"voice": "default", "format": "pcm16"},
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]}]}
    start = time.perf_counter()
    first = last = None
    transcript = []
    with client.stream("POST", "/v3/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                audio = (choice.get("delta") or {}).get("audio") or {}
                transcript.append(audio.get("transcript") or "")
                if audio.get("data"):
                    last = time.perf_counter() - start
                    first = first or last
    if first is None or last is None:
        raise RuntimeError("the voice graph answered without audio")
    return first, last, "".join(transcript)


def three_calls(client: httpx.Client, wav: bytes, max_tokens: int) -> tuple[float, float, str]:
    """(seconds to the first audio byte, to the last, the text spoken) with transcription, chat and speech."""
    start = time.perf_counter()
    heard = client.post("/v3/audio/transcriptions", data={"model": "whisper"},
                        files={"file": ("speech.wav", wav, "audio/wav")})
    heard.raise_for_status()
    chat = client.post("/v3/chat/completions", json={
        "model": "llm", "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": heard.json()["text"].strip()}]})
    chat.raise_for_status()
    text = chat.json()["choices"][0]["message"]["content"]
    first = last = None
    speech_body = {"model": "speech", "input": text, "voice": "default", "response_format": "pcm",
                   "stream_format": "audio"}
    with client.stream("POST", "/v3/audio/speech", json=speech_body) as speech:
        speech.raise_for_status()
        for chunk in speech.iter_raw():
            if chunk:
                last = time.perf_counter() - start
                first = first or last
    if first is None or last is None:
        raise RuntimeError("the speech call answered without audio")
    return first, last, text


def serve(args: argparse.Namespace, root: Path) -> ServerSpec:
    """The server's config: the four graphs on the chosen models."""
    models = {"smollm2": args.llm, "whisper": str(Path(args.whisper).resolve()),
              "speecht5-tts": str(Path(args.speech).resolve())}
    voice_file = Path(args.voice_file).resolve() if args.voice_file else None
    entries = []
    for name, graph_name in (("voice", "voice"), ("whisper", "speech2text"), ("llm", "llm"),
                             ("speech", "text2speech")):
        (root / name).mkdir()
        (root / name / "graph.pbtxt").write_text(graph(graph_name, models, voice_file))
        entries.append({"name": name, "base_path": name})
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": entries}))
    port = free_port()
    base = f"http://{HOST}:{port}"
    return ServerSpec(name="ovserve-voice", argv=[str(REPO / ".venv" / "bin" / "ovserve"), "serve", "--config_path",
                                                  str(root / "config.json"), "--host", HOST, "--port", str(port)],
                      base_url=base, ready_url=f"{base}/v3/models", log_path=root / "server.log",
                      ready_timeout_s=300.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=3.0, help="the length of the recording")
    parser.add_argument("--whisper", default=str(TINY / "whisper"))
    parser.add_argument("--llm", default="smollm2", help="a model in the store, or a path")
    parser.add_argument("--speech", default=str(TINY / "speecht5"))
    parser.add_argument("--voice-file", default=str(TINY / "speecht5" / "speaker.bin"))
    args = parser.parse_args()
    wav = recording(args.seconds)
    results: dict[str, list[tuple[float, float]]] = {"voice graph": [], "three calls": []}
    with tempfile.TemporaryDirectory() as tmp, running(serve(args, Path(tmp))) as server, \
            httpx.Client(base_url=server.spec.base_url, timeout=300) as client:
        voice_graph_call(client, wav, args.max_tokens)  # warm-up: first calls compile and fill caches
        three_calls(client, wav, args.max_tokens)
        for run in range(args.runs):
            v_first, v_last, v_text = voice_graph_call(client, wav, args.max_tokens)
            t_first, t_last, t_text = three_calls(client, wav, args.max_tokens)
            results["voice graph"].append((v_first, v_last))
            results["three calls"].append((t_first, t_last))
            same = "same text" if v_text.strip() == t_text.strip() else "texts differ"
            print(f"run {run + 1}: voice graph {v_first * 1000:.0f} ms (last {v_last * 1000:.0f}), three calls "
                  f"{t_first * 1000:.0f} ms (last {t_last * 1000:.0f}), {same}; spoken: {t_text!r}")
    median = {name: (statistics.median(f for f, _ in rows), statistics.median(la for _, la in rows))
              for name, rows in results.items()}
    info = machine_info(REPO)
    print(f"\n{info['nproc']} cores of {info['cpu_model']}, {info['date']}, commit {info['git_commit']}; "
          f"{args.runs} runs, max_tokens {args.max_tokens}, a {args.seconds:g} s recording\n")
    print(markdown(["way", "first audio byte, median ms", "last audio byte, median ms"],
                   [[name, round(first * 1000), round(last * 1000)] for name, (first, last) in median.items()]))
    ratio = median["voice graph"][0] / median["three calls"][0]
    print(f"\nfirst audio byte, voice graph / three calls: {ratio:.2f}")
    print(re.sub(r"\s+", " ", f"models: whisper {args.whisper}, llm {args.llm}, speech {args.speech}"))


if __name__ == "__main__":
    main()
