"""The engine process: its handshake (a server of another protocol version is told so)."""

import pytest


@pytest.mark.parametrize("hello", [("settings", None), "HELLO_OF_ANOTHER_VERSION"])
def test_a_server_of_another_protocol_version_is_told_so_and_the_engine_exits(hello):
    import os
    import socket
    import subprocess
    import sys

    from ovserve.engine.messages import PROTOCOL_VERSION, Hello, LoadFailed
    from ovserve.engine.protocol import decode_frames, encode_frame

    if hello == "HELLO_OF_ANOTHER_VERSION":
        hello = Hello(PROTOCOL_VERSION + 1, None)
    server, engine = socket.socketpair()
    worker = subprocess.Popen([sys.executable, "-m", "ovserve.engine.worker", str(engine.fileno()), str(os.getpid())],
                              pass_fds=(engine.fileno(),))
    engine.close()
    server.sendall(encode_frame(hello))
    assert worker.wait(timeout=60) == 2
    buffer = bytearray()
    while chunk := server.recv(1 << 16):
        buffer += chunk
    (answer,) = decode_frames(buffer)
    assert isinstance(answer, LoadFailed) and f"protocol version {PROTOCOL_VERSION}" in answer.reason
