"""Speech to text (OpenAI's ``/v3/audio/transcriptions`` and ``/translations``): uploads decoded to Whisper's 16 kHz
mono samples (:mod:`.decode`), the request form declared (:mod:`.schema`), and Whisper's results written in
OpenAI's response formats and stream events (:mod:`.transcript`)."""

from ovserve.calculators.audio.schema import LIST_FIELDS
from ovserve.endpoints import Endpoint

#: Multipart forms: the audio in ``file``, the other fields as text.
ENDPOINTS = (
    Endpoint("/audio/transcriptions", ("speech2text",), form=True, list_fields=LIST_FIELDS),
    Endpoint("/audio/translations", ("speech2text",), form=True, list_fields=LIST_FIELDS),
)
