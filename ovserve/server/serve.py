"""``ovserve serve``: load the graphs, then serve them with uvicorn until interrupted.

The flags are in ``serve_flags``, what they make the server serve in ``serve_models``, and the server's settings
from them in ``serve_settings``; this module starts it all."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from pathlib import Path

from ovserve.framework.errors import GraphError
from ovserve.framework.registry import Registry, build_registry
from ovserve.server.app import build_app
from ovserve.server.config_reload import ConfigReloader
from ovserve.server.log_format import configure_logging
from ovserve.server.routes import OpenAIRoutes, ServerSettings
from ovserve.server.servables import Servables, ServableSpec
from ovserve.server.serve_models import background_model, background_specs, pull_only, servable_specs
from ovserve.server.serve_settings import allowed_origins, completion_store, guard_settings, model_aliases
from ovserve.store.fetch import ModelFetchError

log = logging.getLogger("ovserve.server")

#: Default admission limit per model: this many requests per sequence its engine batches (max_num_seqs).
ADMISSION_PER_SEQUENCE = 4


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard address (listen everywhere) is not one to connect to."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads: a port in use or a bad host fails at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"cannot listen on {host}:{port}: unknown host ({error.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


async def serve(args: argparse.Namespace) -> int:
    import uvicorn  # here, so that the other commands (graph check, calculators) do not load the server

    guard = guard_settings(args)
    origins = allowed_origins(args.allowed_origins)
    aliases = model_aliases(args.model_alias)
    if args.poll_seconds < 0:
        raise ValueError("--file-system-poll-wait-seconds must be 0 (no polling) or more seconds")
    sock = listen(args.host, args.port)
    try:
        loaded = servable_specs(args)
        specs, calculator_paths = loaded
        later = background_model(args)
        if later is not None and later in {spec.name for spec in specs}:
            raise ValueError(f"--embedding-model {later}: a model is already served under that name")
        registry = build_registry([*calculator_paths, *map(Path, args.calculators)])
        log.info("loading %s", ", ".join(f"{s.name} ({s.graph_path})" for s in specs))
        servables = await Servables.load(specs, registry)
        if later:
            servables.load_in_background([later], lambda: background_specs(args, later), registry)
        watcher: asyncio.Future[None] | None = None
        try:
            models = len(specs) + (1 if later else 0)  # the same models admit the same, however they are started
            limit = args.max_concurrent_requests or ADMISSION_PER_SEQUENCE * (args.max_num_seqs or 256) * models
            log.info("admitting up to %d concurrent completion requests", limit)
            app = build_app(servables, ServerSettings(guard, limit, args.sse_keepalive or None,
                                                      args.request_timeout or None, origins, completion_store(args),
                                                      args.body_timeout or None, aliases))
            config = uvicorn.Config(app, host=args.host, port=args.port, access_log=False, log_config=None,
                                    lifespan="on", timeout_graceful_shutdown=args.shutdown_timeout)
            server = uvicorn.Server(config)
            app.state.routes.draining = lambda: server.should_exit
            watcher = watch_config(args, loaded, servables, registry, app.state.routes)
            global _uvicorn_started
            _uvicorn_started = True
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            if server.started:
                print(f"ovserve ready: {client_url(args.host, args.port)}/v3 serving {', '.join(servables.names())}",
                      flush=True)
            await serving
            lifespan = getattr(server, "lifespan", None)
            if server.force_exit and lifespan is not None and not lifespan.shutdown_event.is_set():
                # a second Ctrl-C skips the app's shutdown; end it here, or its cancellation logs a traceback
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lifespan.shutdown(), 2)
            return 0 if server.started else 1
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await servables.stop()
    finally:
        sock.close()


_uvicorn_started = False


def watch_config(args: argparse.Namespace, loaded: tuple[list[ServableSpec], list[Path]], servables: Servables,
                 registry: Registry, routes: OpenAIRoutes) -> asyncio.Future[None] | None:
    """With ``--config``: the reloader behind ``POST /v1/config/reload``, and its polling task (None when
    ``--file-system-poll-wait-seconds`` is 0, or without ``--config``)."""
    if not args.config:
        return None
    metrics = routes.metrics
    routes.reloader = ConfigReloader(Path(args.config), loaded, servables, registry, map(Path, args.calculators),
                                     on_failure=lambda model: metrics.config_reload_failures.labels(model or "-").inc(),
                                     on_reload=metrics.config_reloads.inc)
    routes.reloader.draining = routes.draining
    if not args.poll_seconds:
        return None
    log.info("watching %s and its graph files every %gs for changes", args.config, args.poll_seconds)
    return asyncio.ensure_future(routes.reloader.watch(args.poll_seconds))


def _on_stop_signal(signum: int, frame: object) -> None:
    """SIGTERM and SIGINT outside uvicorn's own handling. While models load they stop the server; uvicorn, once it
    has drained, raises the signal again with this handler: then it returns, so that a drained server exits 0
    (docker stop, systemd, Kubernetes, Ctrl-C) without a traceback from the interrupted event loop."""
    if not _uvicorn_started:
        raise KeyboardInterrupt


def run_serve(args: argparse.Namespace) -> int:
    if args.pull:
        return pull_only(args)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    configure_logging(args.log_level, args.log_format)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    try:
        return runner(serve(args))
    except (GraphError, ModelFetchError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
