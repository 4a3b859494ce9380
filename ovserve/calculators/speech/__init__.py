"""Text to speech (OpenAI's ``/v3/audio/speech``): the request declared (:mod:`.schema`), texts split into sentences
(:mod:`.sentences`), spoken in the model's engine process sentence by sentence (:mod:`.synthesize`), and encoded in
OpenAI's response formats (:mod:`.encode`)."""

from ovserve.calculators.speech.schema import SpeechRequest
from ovserve.endpoints import Endpoint

ENDPOINTS = (Endpoint("/audio/speech", ("text2speech",), SpeechRequest),)
