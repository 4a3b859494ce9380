"""Speech to text (OpenAI's ``/v3/audio/transcriptions`` and ``/translations``): uploads decoded to Whisper's 16 kHz
mono samples (:mod:`.decode`), the request form declared (:mod:`.schema`), and Whisper's results written in
OpenAI's response formats and stream events (:mod:`.transcript`)."""
