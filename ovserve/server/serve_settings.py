"""The server's settings from the flags of ``ovserve serve``: access (API keys and bounds), model aliases, CORS
origins and the completion store, each checked with the flag named in its error."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from pathlib import Path

from ovserve.server.completion_store import CompletionStore
from ovserve.server.guard import GuardSettings
from ovserve.store.fetch import ovserve_home


def guard_settings(args: argparse.Namespace) -> GuardSettings:
    """API keys from ``--api-key``, ``$OVSERVE_API_KEY``, ``--api_key_file`` and ``$API_KEY`` (OVMS's)."""
    keys = [*args.api_key, os.environ.get("OVSERVE_API_KEY", ""), os.environ.get("API_KEY", "")]
    if args.api_key_file is not None:
        try:
            keys.append(args.api_key_file.read_text().strip())
        except OSError as error:
            raise ValueError(f"--api_key_file: cannot read {args.api_key_file}: {error.strerror}") from None
        if not keys[-1]:
            raise ValueError(f"--api_key_file: {args.api_key_file} is empty")
    if args.max_request_bytes < 1:
        raise ValueError("--max-request-bytes must be at least 1")
    if args.max_concurrent_requests is not None and args.max_concurrent_requests < 1:
        raise ValueError("--max-concurrent-requests must be at least 1")
    for flag in ("sse_keepalive", "request_timeout", "shutdown_timeout", "engine_step_timeout", "body_timeout"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 or more seconds, not {value:g}")
    return GuardSettings(tuple(dict.fromkeys(k.strip() for k in keys if k.strip())), args.protect_metrics,
                         args.max_request_bytes)


def model_aliases(values: list[str]) -> tuple[tuple[str, str], ...] | None:
    """``--model-alias PATTERN=NAME`` flags as (pattern, name) pairs; ``None`` without any (the default alias), ``()``
    for ``none``."""
    if not values:
        return None
    if values == ["none"]:
        return ()
    aliases = []
    for value in values:
        pattern, _, name = value.partition("=")
        if not pattern.strip() or not name.strip():
            raise ValueError(f"--model-alias {value!r}: expected PATTERN=NAME (e.g. 'claude-*=smollm2'), or 'none'")
        aliases.append((pattern.strip(), name.strip()))
    return tuple(aliases)


def allowed_origins(value: str | None) -> tuple[str, ...]:
    """``--allowed-origins``: ``a,b``, ``["a", "b"]`` (vLLM's form) or ``*``."""
    if not value:
        return ()
    if value.strip().startswith("["):
        try:
            origins = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"--allowed-origins: not a JSON list: {error}") from None
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise ValueError("--allowed-origins: give a JSON list of strings, or origins separated by commas")
        return tuple(origins)
    return tuple(origin.strip() for origin in value.split(",") if origin.strip())


def completion_store(args: argparse.Namespace) -> CompletionStore | None:
    """The store of ``store: true`` chat completions the flags ask for (None: ``--store-path none``)."""
    if args.store_path == "none":
        return None
    if args.store_max_items < 1 or args.store_max_total_items < 1 or args.store_max_age_days <= 0:
        raise ValueError("--store-max-items and --store-max-total-items must be at least 1 and --store-max-age-days "
                         "above 0")
    path = Path(args.store_path).expanduser() if args.store_path else ovserve_home() / "store.sqlite3"
    try:
        return CompletionStore(path, args.store_max_items, args.store_max_age_days * 86400,
                               args.store_max_total_items)
    except (OSError, sqlite3.Error) as error:
        raise ValueError(f"cannot keep stored completions at {path} ({error}); give a writable --store-path, or "
                         f"--store-path none") from None
