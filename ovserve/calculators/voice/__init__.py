"""A spoken conversation as one graph (``graphs/voice.pbtxt``): chat requests whose ``input_audio`` parts are
transcribed by a speech-to-text model (:mod:`.listen`), answered by the LLM graph's nodes, and spoken by a
text-to-speech model sentence by sentence as the answer is written (:mod:`.answer`)."""
