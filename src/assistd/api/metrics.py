"""/metrics: the process's Prometheus metrics (``assistd.metrics``) and the database's work in hand.

No key: Prometheus scrapes it, and tenants' keys are not an operator's. ``ASSISTD_METRICS=false`` leaves
the route out (README: "Operations").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .. import metrics
from ..store.stats import WorkStats, work_stats
from .deps import Db
from .health import CHECK_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def scrape(request: Request, db: Db) -> Response:
    stats: WorkStats | None = None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with db.read() as session:
                stats = await work_stats(session)
    except Exception as exc:
        # The process's own metrics are worth most while the database is down: answer them, with
        # assistd_database_up 0, rather than fail the whole scrape.
        log.warning("metrics: could not read the database: %s", type(exc).__name__)
    body, content_type = metrics.render(_families(stats), request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _families(stats: WorkStats | None) -> Iterator[Metric]:
    yield _gauge(
        "assistd_database_up", "1 when this scrape could read the database, else 0.", int(stats is not None)
    )
    if stats is None:
        return
    runs = GaugeMetricFamily(
        "assistd_runs",
        "Runs in each active status, in the whole database (all processes).",
        labels=["status"],
    )
    for status, count in stats.runs_by_status.items():
        runs.add_metric([status], count)
    yield runs
    yield _gauge(
        "assistd_run_queue_depth", "Queued runs not yet started, in the whole database.", stats.queued_runs
    )
    yield _gauge(
        "assistd_run_queue_oldest_age_seconds",
        "How long the longest-waiting queued run has waited to start (0 when none waits).",
        stats.oldest_queued_seconds,
    )
    yield _gauge(
        "assistd_run_jobs_unclaimed",
        "Runs whose worker lease lapsed or was given back (a process crashed or stopped), not yet claimed.",
        stats.unclaimed_run_jobs,
    )
    yield _gauge("assistd_ingest_queue_depth", "Files waiting for or being ingested.", stats.ingest_jobs)
