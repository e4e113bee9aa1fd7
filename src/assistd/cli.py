"""``assistd serve`` and friends."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from typing import Any

import uvicorn

from . import __version__, chat_options, keys_cli
from .config import Settings
from .store.database import Database

log = logging.getLogger("assistd")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def raise_open_files_limit(workers: int) -> int:
    """Raise this process's soft limit on open files to its hard limit, as servers of many connections
    do (the soft limit is often 1,024, the hard one far higher), and warn when it stays too low for
    ``workers`` runs: each streaming run holds a client's socket and an upstream connection, and a process
    out of descriptors refuses connections. Processes it starts inherit it. Returns the soft limit now."""
    try:
        import resource
    except ImportError:  # not on this platform
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = soft if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    # An API-only replica (workers 0) holds the streams it relays: as many as a worker's, say.
    wanted = 2 * (workers or 1000) + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "this process may open %d files; %d runs streaming at once need about %d (two sockets each): "
            "raise the limit (`ulimit -n`, systemd's LimitNOFILE, docker's --ulimit nofile) or lower "
            "ASSISTD_WORKERS",
            soft,
            workers or 1000,
            wanted,
        )
    return int(soft)


def serve(args: argparse.Namespace) -> int:
    from .app import create_app

    settings = Settings()
    host = args.host
    # An admin key makes keys required too (api/managed_keys.py), whatever the database holds.
    keyed = bool(settings.api_key_list) or settings.admin_key is not None
    if not keyed and not _is_loopback(host):
        log.warning(
            "no ASSISTD_API_KEYS are set: binding 127.0.0.1 instead of %s so nobody else can reach "
            "an open server. Set keys to serve other machines.",
            host,
        )
        host = "127.0.0.1"
    elif not keyed:
        log.warning("no ASSISTD_API_KEYS are set: any key is accepted, and only this machine can connect")
    if not settings.upstream_base_url:
        log.info("no ASSISTD_UPSTREAM_BASE_URL is set: runs use the local models only")
    if args.workers is not None:
        if args.workers < 0:
            print("assistd serve: --workers must be at least 0", file=sys.stderr)
            return 2
        # Through the environment, so that every process of `--processes N` reads the same.
        os.environ["ASSISTD_WORKERS"] = str(args.workers)
        settings = Settings()
    if settings.workers == 0:
        log.info("--workers 0: this server executes no runs; `assistd worker` processes do")
    raise_open_files_limit(settings.workers)
    processes = settings.processes if args.processes is None else args.processes
    if processes < 1:
        print("assistd serve: --processes must be at least 1", file=sys.stderr)
        return 2
    log.info("assistd %s listening on http://%s:%d/v1", __version__, host, args.port)
    options: dict[str, Any] = {
        "host": host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": args.access_log,
        "timeout_graceful_shutdown": 5,
    }
    if processes == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Several processes share the listening socket (uvicorn's supervisor restarts any that dies). Each
    # builds its app from the same environment; the schema is brought up to date once, here, first.
    if settings.auto_migrate:
        asyncio.run(_migrate(Database(settings.resolved_database_url)))
    os.environ["ASSISTD_PROCESSES"] = str(processes)
    log.info("serving with %d processes", processes)
    uvicorn.run("assistd.app:create_app", factory=True, workers=processes, **options)
    return 0


async def _migrate(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade ``db`` to ``revision``; the revisions before and after."""
    try:
        before = (await db.schema()).current
        await db.migrate(revision)
        return before, (await db.schema()).current
    finally:
        await db.close()


def migrate(args: argparse.Namespace) -> int:
    """Bring the database ``ASSISTD_DATABASE_URL`` names up to date: the release step of deploys that run
    several replicas with ``ASSISTD_AUTO_MIGRATE=false``. Safe to run while servers run, or twice at once."""
    settings = Settings()
    try:
        before, after = asyncio.run(_migrate(Database(settings.resolved_database_url), args.revision))
    except Exception as exc:
        print(f"assistd migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"assistd migrate: the schema is at revision {after}; nothing to do")
    else:
        print(f"assistd migrate: upgraded the schema from revision {before or 'none'} to {after}")
    return 0


def worker(args: argparse.Namespace) -> int:
    """Execute runs and ingestion jobs queued in ``ASSISTD_DATABASE_URL``, with no HTTP, until SIGTERM
    or SIGINT; then claim nothing more, let runs in flight end within ``ASSISTD_SHUTDOWN_GRACE_SECONDS``
    and hand the others back (another worker resumes them at once)."""
    settings = Settings()
    if settings.workers < 1:
        print("assistd worker: ASSISTD_WORKERS must be at least 1", file=sys.stderr)
        return 2
    raise_open_files_limit(settings.workers)
    try:
        asyncio.run(_work(settings))
    except Exception as exc:
        print(f"assistd worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _work(settings: Settings) -> None:
    from .runtime import open_runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_runtime(settings, "worker") as runtime:
        log.info("assistd %s worker executing up to %d runs at once", __version__, settings.workers)
        await stop.wait()
        runtime.engine.pool.stop_claiming()
        log.info(
            "assistd worker stopping: runs in flight may end within %gs, then handing its runs back",
            settings.shutdown_grace_seconds,
        )


def _chat(args: argparse.Namespace) -> int:
    # Imported here: the chat's client-side SDK types cost every other command's start (see chat_options).
    from . import chat

    return chat.run(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="assistd", description="A drop-in OpenAI Assistants API v2 server.")
    parser.add_argument("--version", action="version", version=f"assistd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="start the HTTP server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--log-level", default="info")
    serve_parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)
    serve_parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="processes serving requests and executing runs (default: ASSISTD_PROCESSES, else 1)",
    )
    serve_parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs each process executes at once; 0 serves the API only, for `assistd worker` processes "
        "to execute (default: ASSISTD_WORKERS, else 1000)",
    )
    serve_parser.set_defaults(handler=serve)
    worker_parser = commands.add_parser(
        "worker", help="execute queued runs and ingestion jobs, with no HTTP (ASSISTD_DATABASE_URL)"
    )
    worker_parser.add_argument("--log-level", default="info")
    worker_parser.set_defaults(handler=worker)
    migrate_parser = commands.add_parser(
        "migrate", help="bring the database's schema up to date (ASSISTD_DATABASE_URL), then exit"
    )
    migrate_parser.add_argument(
        "--revision", default="head", help="upgrade to this revision instead of the newest (default: head)"
    )
    migrate_parser.set_defaults(handler=migrate)
    chat_parser = commands.add_parser("chat", help="chat with an assistant in the terminal")
    chat_options.add_arguments(chat_parser)
    chat_parser.set_defaults(handler=_chat)
    keys_parser = commands.add_parser("keys", help="list, create and revoke API keys (default: list)")
    keys_cli.add_arguments(keys_parser)
    keys_parser.set_defaults(handler=keys_cli.run)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper() if hasattr(args, "log_level") else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(args.handler(args))
