"""A stand-in for the Hugging Face Hub's HTTP API on loopback, serving repositories made of local files,
so that pulling by id is tested for real through huggingface_hub with no internet (``HF_ENDPOINT``)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from tests.conftest import free_port

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _etag(path: Path) -> str:
    return hashlib.sha1(f"{path}:{path.stat().st_size}".encode()).hexdigest()


def hub_app(repos: dict[str, dict[str, Path]]) -> Starlette:
    """``repos``: repository id → {file name in the repository → local file}."""

    def not_found(what: str) -> Response:
        return JSONResponse({"error": f"{what} not found"}, status_code=404, headers={"X-Error-Code": "RepoNotFound"})

    async def tree(request: Request) -> Response:
        repo = f"{request.path_params['org']}/{request.path_params['name']}"
        if repo not in repos:
            return not_found(repo)
        return JSONResponse([{"type": "file", "path": name, "size": path.stat().st_size, "oid": _etag(path)}
                             for name, path in repos[repo].items()])

    async def info(request: Request) -> Response:
        repo = f"{request.path_params['org']}/{request.path_params['name']}"
        if repo not in repos:
            return not_found(repo)
        return JSONResponse({"id": repo, "modelId": repo, "sha": REVISION, "private": False,
                             "siblings": [{"rfilename": name} for name in repos[repo]]})

    async def resolve(request: Request) -> Response:
        repo = f"{request.path_params['org']}/{request.path_params['name']}"
        path = repos.get(repo, {}).get(request.path_params["file"])
        if path is None:
            return JSONResponse({"error": "entry not found"}, status_code=404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": REVISION, "ETag": f'"{_etag(path)}"', "Content-Length": str(path.stat().st_size)}
        if request.method == "HEAD":
            return Response(headers=headers)
        return FileResponse(path, headers={"X-Repo-Commit": REVISION, "ETag": f'"{_etag(path)}"'})

    async def other(request: Request) -> Response:
        return JSONResponse({"error": "not served by the fake hub"}, status_code=404)

    return Starlette(routes=[
        Route("/api/models/{org}/{name}/tree/{revision}", tree),
        Route("/api/models/{org}/{name}/revision/{revision}", info),
        Route("/api/models/{org}/{name}", info),
        Route("/{org}/{name}/resolve/{revision}/{file:path}", resolve, methods=["GET", "HEAD"]),
        Route("/{rest:path}", other, methods=["GET", "HEAD", "POST"]),
    ])


@contextmanager
def fake_hub(repos: dict[str, dict[str, Path]]) -> Iterator[str]:
    """Serve ``repos`` on a free loopback port; yields the endpoint URL (for ``HF_ENDPOINT``)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hub_app(repos), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
