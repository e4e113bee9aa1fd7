"""The options of ``assistd chat``: apart from the chat itself, so that every other command (the server
above all, started often) need not import the SDK's client-side types the chat uses."""

from __future__ import annotations

import argparse

DEFAULT_URL = "http://127.0.0.1:8000/v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url", help=f"the server's API base URL (ASSISTD_URL, OPENAI_BASE_URL, {DEFAULT_URL})"
    )
    where.add_argument(
        "--embedded", action="store_true", help="start assistd in this process (settings from ASSISTD_*)"
    )
    parser.add_argument("--key", help="API key (ASSISTD_KEY, OPENAI_API_KEY)")
    parser.add_argument("--assistant", metavar="ID", help="chat with this assistant instead of choosing one")
    parser.add_argument("--thread", metavar="ID", help="resume this thread instead of starting a new one")
    parser.add_argument("--log-level", default="warning", help="log level of the embedded server")
