"""``assistd serve`` and friends."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

import uvicorn

from . import __version__
from .config import Settings

log = logging.getLogger("assistd")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    from .app import create_app

    settings = Settings()
    host = args.host
    if not settings.api_key_list and not _is_loopback(host):
        log.warning(
            "no ASSISTD_API_KEYS are set: binding 127.0.0.1 instead of %s so nobody else can reach "
            "an open server. Set keys to serve other machines.",
            host,
        )
        host = "127.0.0.1"
    elif not settings.api_key_list:
        log.warning("no ASSISTD_API_KEYS are set: any key is accepted, and only this machine can connect")
    if not settings.upstream_base_url:
        log.info("no ASSISTD_UPSTREAM_BASE_URL is set: runs use the local models only")
    log.info("assistd %s listening on http://%s:%d/v1", __version__, host, args.port)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=5,
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="assistd", description="A drop-in OpenAI Assistants API v2 server.")
    parser.add_argument("--version", action="version", version=f"assistd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="start the HTTP server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--log-level", default="info")
    serve_parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)
    serve_parser.set_defaults(handler=serve)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper() if hasattr(args, "log_level") else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(args.handler(args))
