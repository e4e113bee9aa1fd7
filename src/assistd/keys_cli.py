"""``assistd keys``: the static keys' fingerprints and tenants, and the keys managed in the database.

``list`` (the default) prints the keys of ``ASSISTD_API_KEYS``, then those of the database; ``create``
prints a new managed key once (on stdout, alone, for scripts; what it is on stderr); ``revoke`` refuses a
managed key from then on (within ``ASSISTD_KEY_CACHE_SECONDS`` on running servers); ``new`` prints a fresh
random key for ``ASSISTD_API_KEYS``. Keys themselves are never printed but by ``create`` and ``new``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from .config import Settings
from .store.database import Database

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action")
    actions.add_parser("list", help="the static keys, then the managed ones (never the keys themselves)")
    actions.add_parser("new", help="print a fresh random key for ASSISTD_API_KEYS")
    create = actions.add_parser("create", help="create a key in the database and print it, once")
    create.add_argument("--tenant", help="a shared named tenant, as `name:key` gives (default: its own)")
    create.add_argument("--description", help="a note on what the key is for")
    create.add_argument("--expires-in", type=float, metavar="SECONDS", help="refused after so many seconds")
    create.add_argument("--requests-per-minute", type=int, help="its own request rate limit")
    create.add_argument("--tokens-per-day", type=int, help="model tokens its runs may use per UTC day")
    create.add_argument("--storage-bytes", type=int, help="bytes of files its tenant may store")
    create.add_argument("--json", action="store_true", help="print the created key as JSON instead")
    revoke = actions.add_parser("revoke", help="revoke a managed key by its fingerprint (key_...)")
    revoke.add_argument("key_id")


def run(args: argparse.Namespace) -> int:
    action = args.action or "list"
    if action == "new":
        from .store.api_keys import new_key

        print(new_key())
        return 0
    settings = Settings()
    try:
        if action == "list":
            return _list(settings)
        if action == "create":
            return _create(settings, args)
        return _revoke(settings, args.key_id)
    except _Refused as exc:
        print(f"assistd keys: {exc}", file=sys.stderr)
        return 2


class _Refused(Exception):
    pass


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def go() -> T:
        db = Database(settings.resolved_database_url)
        try:
            if settings.auto_migrate:
                await db.migrate()  # as `assistd serve` would on start
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(go())


def _has_database(settings: Settings) -> bool:
    # Listing must not create an empty SQLite database where none is.
    return settings.database_url is not None or Path(settings.data_dir / "assistd.db").exists()


def _list(settings: Settings) -> int:
    from .api.auth import key_entries
    from .store import api_keys
    from .store.models import ApiKeyRow
    from .store.pagination import PageQuery

    try:
        entries = key_entries(settings.api_key_list)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if entries:
        print(f"{'fingerprint':<16}  {'tenant':<27}  name")
        for entry in entries:
            print(f"{entry.fingerprint:<16}  {entry.tenant:<27}  {entry.tenant_name or '-'}")
    else:
        print("no ASSISTD_API_KEYS are set", file=sys.stderr)
    if not _has_database(settings):
        return 0

    async def listed(db: Database) -> list[ApiKeyRow]:
        rows: list[ApiKeyRow] = []
        async with db.read() as session:
            query = PageQuery(limit=100, order="asc")
            while True:
                page, more = await api_keys.list_page(session, query)
                rows += page
                if not more or not page:
                    return rows
                query = PageQuery(limit=100, order="asc", after=page[-1].id)

    rows = _with_db(settings, listed)
    if not rows:
        if not entries:
            print("no managed keys either: any key is accepted, from this machine only", file=sys.stderr)
        return 0
    print(f"\nmanaged keys ({len(rows)}):")
    print(f"{'fingerprint':<16}  {'tenant':<27}  {'name':<12}  {'status':<8}  {'expires':<20}  last used")
    for row in rows:
        status = "revoked" if row.revoked_at is not None else "active"
        if status == "active" and row.expires_at is not None and row.expires_at <= time.time():
            status = "expired"
        print(
            f"{row.id:<16}  {row.tenant:<27}  {row.tenant_name or '-':<12}  {status:<8}  "
            f"{_when(row.expires_at):<20}  {_when(row.last_used_at)}"
        )
    return 0


def _when(at: int | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from .api.managed_keys import issue
    from .protocol.api_keys import ApiKeyCreateParams
    from .store.clock import now

    try:
        params = ApiKeyCreateParams(
            tenant_name=args.tenant,
            description=args.description,
            expires_at=None if args.expires_in is None else now() + round(args.expires_in),
            requests_per_minute=args.requests_per_minute,
            tokens_per_day=args.tokens_per_day,
            storage_bytes=args.storage_bytes,
        )
    except ValidationError as exc:
        raise _Refused(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    created = _with_db(settings, lambda db: issue(db, params))
    if args.json:
        print(created.model_dump_json())
    else:
        print(created.key)
    where = f"tenant {created.tenant_name!r}" if created.tenant_name else "its own tenant"
    print(f"created {created.id} in {where}; the key is shown only this once", file=sys.stderr)
    return 0


def _revoke(settings: Settings, key_id: str) -> int:
    from .errors import NotFoundError
    from .store import api_keys

    async def revoke(db: Database) -> None:
        async with db.write() as session:
            await api_keys.revoke(session, key_id)

    try:
        _with_db(settings, revoke)
    except NotFoundError as exc:
        raise _Refused(exc.message) from None
    print(f"revoked {key_id}: running servers refuse it within {settings.key_cache_seconds:g}s")
    return 0
