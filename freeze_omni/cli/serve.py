"""`freeze-omni serve`: the model as a server for browsers and clients (page, WebSocket, health, metrics)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from freeze_omni.cli import add_draft_threshold, add_leaf
from freeze_omni.paths import DEFAULT_MODEL_DIR


def run(args: argparse.Namespace) -> int:
    from freeze_omni.bundle import missing_parts

    if args.replicas < 1 or args.max_users < 1 or args.threads < 1:
        print(f"{args.prog}: --replicas, --max-users and --threads must be >= 1", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and not args.token:
        print(f"{args.prog}: serving on {args.host} (not loopback) without --token lets anyone on the network "
              "talk to the model; pass --token", file=sys.stderr)
        return 2
    if missing := missing_parts(args.model):
        print(f"{args.prog}: the model in {args.model} is not complete yet; missing:", file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        return 2
    import torch
    import uvicorn

    from freeze_omni.serving import ModelServer, ServerLimits, load_replicas
    from freeze_omni.serving.app import UVICORN_SETTINGS, create_app

    torch.set_num_threads(args.threads)
    replicas = load_replicas(args.model, args.replicas, args.temperature, args.draft_threshold)
    limits = ServerLimits(max_users=args.max_users, idle_timeout_s=args.idle_timeout,
                          memory_cap_bytes=int(args.memory_cap_mb * 2 ** 20))
    app = create_app(ModelServer(replicas, limits), args.token)
    query = f"?token={args.token}" if args.token else ""
    print(f"serving {args.model} with {args.replicas} replica(s) on http://{args.host}:{args.port}/{query}",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **UVICORN_SETTINGS)
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def register(commands) -> None:
    serve = add_leaf(commands, "serve", "serve the model to browsers and clients over WebSocket", run)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--replicas", type=int, default=1, help="copies of the model working in parallel")
    serve.add_argument("--max-users", type=int, default=8, help="users served at once; more are refused")
    serve.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder (default: the shipped model)")
    serve.add_argument("--token", help="access token clients must present (required off loopback)")
    serve.add_argument("--threads", type=int, default=1, help="torch threads (each replica runs in its own thread)")
    serve.add_argument("--idle-timeout", type=float, default=60.0, help="seconds without audio before a user is dropped")
    serve.add_argument("--temperature", type=float, default=0.0,
                       help="answer sampling temperature (0: greedy); each user samples with its own seed")
    add_draft_threshold(serve)
    serve.add_argument("--memory-cap-mb", type=float, default=2048.0, help="cache memory of all sessions together")
