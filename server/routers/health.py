"""Liveness, readiness (the page store and the answering VLM) and Prometheus metrics; open without a key."""

from __future__ import annotations

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from server.dependencies import Services, ServicesDep
from server.protocol import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(services: ServicesDep):
    checks: dict[str, str] = {}
    store_ok = await _check_store(services, checks)
    vlm_ok = await _check_vlm(services, checks)
    ready = store_ok and vlm_ok
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _check_store(services: Services, checks: dict[str, str]) -> bool:
    try:
        await run_in_threadpool(services.index.books)
    except Exception as error:
        checks["store"] = f"unavailable ({type(error).__name__})"
        return False
    checks["store"] = "ok"
    return True


async def _check_vlm(services: Services, checks: dict[str, str]) -> bool:
    if services.agent.evidence_only:
        checks["vlm"] = "evidence-only (no VLM configured)"
        return True
    settings = services.settings
    key = settings.vlm_api_key.get_secret_value() if settings.vlm_api_key else "EMPTY"
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            reply = await client.get(settings.vlm_base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as error:
        checks["vlm"] = f"unreachable ({type(error).__name__})"
        return False
    checks["vlm"] = "ok" if reply.status_code == 200 else f"HTTP {reply.status_code}"
    return reply.status_code == 200
