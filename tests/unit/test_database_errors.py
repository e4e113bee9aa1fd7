"""Which exceptions mean "the database is unavailable" (a 503 worth retrying) and which are bugs (500)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable

import asyncpg
from sqlalchemy import exc as sa_exc

from assistd.store.outage import database_unavailable, storage_full


def _raised(fail: Callable[[], None]) -> BaseException:
    try:
        fail()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def _in_module(module: str, error: BaseException) -> BaseException:
    """``error`` raised from code of ``module`` (e.g. the database client's connect)."""
    scope: dict[str, object] = {"__name__": module, "error": error}
    exec("def fail():\n    raise error\n", scope)
    fail = scope["fail"]
    assert callable(fail)
    return _raised(fail)


def test_connection_failures_of_the_database_client_are_unavailability() -> None:
    assert database_unavailable(sa_exc.OperationalError("SELECT 1", {}, Exception("server closed")))
    assert database_unavailable(sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")))
    assert database_unavailable(sa_exc.TimeoutError("QueuePool limit reached"))
    invalidated = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert database_unavailable(invalidated)
    assert database_unavailable(
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    )
    assert database_unavailable(_in_module("sqlalchemy.pool.base", ConnectionRefusedError(111, "refused")))
    assert database_unavailable(_in_module("asyncpg.connect_utils", TimeoutError()))


def test_a_cause_counts_too() -> None:
    def wrapped() -> None:
        try:
            raise sa_exc.OperationalError("SELECT 1", {}, Exception("server closed"))
        except sa_exc.OperationalError as exc:
            raise RuntimeError("while saving") from exc

    assert database_unavailable(_raised(wrapped))


def test_bad_statements_and_other_sockets_are_not() -> None:
    assert not database_unavailable(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not database_unavailable(sa_exc.DBAPIError("SELECT", {}, Exception("syntax error")))
    assert not database_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    # The same socket errors raised elsewhere (an upstream, a sandbox pipe) are not the database's.
    assert not database_unavailable(_in_module("assistd.sandbox.local", ConnectionResetError()))
    assert not database_unavailable(_in_module("httpx2._transports", BrokenPipeError()))
    assert not database_unavailable(ValueError("no"))


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # as the sqlite3 module sets it
    return error


def test_no_room_left_is_storage_full_not_an_outage() -> None:
    full = sa_exc.OperationalError(
        "INSERT", {}, _sqlite_error("database or disk is full", sqlite3.SQLITE_FULL)
    )
    assert storage_full(full)
    assert storage_full(asyncpg.exceptions.DiskFullError("could not extend file"))
    assert storage_full(OSError(errno.ENOSPC, "No space left on device"))
    assert storage_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    busy = sa_exc.OperationalError("INSERT", {}, _sqlite_error("database is locked", sqlite3.SQLITE_BUSY))
    assert not storage_full(busy)
    assert not storage_full(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not storage_full(OSError(errno.EACCES, "Permission denied"))
