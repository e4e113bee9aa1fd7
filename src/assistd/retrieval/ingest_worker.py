"""Runs queued ingestions with bounded concurrency, keeps their leases alive, and hands them back at
shutdown. A file whose ingestion was claimed too often (it crashed the process, or kept failing) ends
``failed`` rather than ``in_progress`` forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..config import Settings
from ..store import vector_stores as store
from ..store.database import Database
from ..store.jobs import INGESTION, ingest_holder
from .ingest import Ingestor

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class IngestWorker:
    def __init__(self, settings: Settings, db: Database, ingestor: Ingestor, process_id: str) -> None:
        self._settings = settings
        self._db = db
        self._ingestor = ingestor
        # The process's id (``engine.worker.new_process_id``) and a suffix: what a process that finds this
        # one dead frees at once (``WorkerPool.release_dead``).
        self.worker_id = ingest_holder(process_id)
        self._slots = asyncio.Semaphore(settings.ingest_workers)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._wake.set()
        self._loop = asyncio.create_task(self._dispatch())

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(t for t in (self._loop, *self._tasks) if t is not None), return_exceptions=True
        )

    async def _dispatch(self) -> None:
        interval = self._settings.maintenance_interval_seconds
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                # Idle: look with a read, and pay for a claim's write only when a job waits.
                try:
                    async with self._db.read() as session:
                        if not await INGESTION.claimable(session):
                            continue
                except Exception:
                    log.exception("looking for ingestion jobs failed")
                    continue
            self._wake.clear()
            while True:
                await self._slots.acquire()
                try:
                    async with self._db.write() as session:
                        claimed = await INGESTION.claim_next(
                            session, self.worker_id, self._settings.run_lease_seconds
                        )
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("claiming an ingestion job failed")
                    claimed = None
                if claimed is None:
                    self._slots.release()
                    break
                task = asyncio.create_task(self._run(claimed[0], claimed[1]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, job: str, attempts: int) -> None:
        vector_store_id, file_id = store.split_job_id(job)
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            if attempts > MAX_ATTEMPTS:
                await self._ingestor.fail(
                    vector_store_id, file_id, "server_error", "Ingestion was interrupted too many times."
                )
                return
            await self._ingestor.ingest(vector_store_id, file_id)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with self._db.write() as session:
                    await INGESTION.release(session, job, self.worker_id)
            raise
        except Exception as exc:
            log.exception("ingesting %s failed", job)
            if attempts >= MAX_ATTEMPTS:
                with contextlib.suppress(Exception):
                    await self._ingestor.fail(
                        vector_store_id, file_id, "server_error", f"Ingestion failed: {_reason(exc)}."
                    )
            # Otherwise the lease lapses and another attempt follows.
        finally:
            heartbeat.cancel()
            self._slots.release()

    async def _heartbeat(self, job: str) -> None:
        lease = self._settings.run_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with self._db.write() as session:
                    await INGESTION.extend(session, [job], self.worker_id, lease)
            except Exception:
                log.warning("could not extend the lease of ingestion %s", job, exc_info=True)


def _reason(exc: Exception) -> str:
    # An OSError's own words name the cause ("No space left on device"), without the path it carries.
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
