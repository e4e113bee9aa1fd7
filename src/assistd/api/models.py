"""/v1/models"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..errors import NotFoundError
from .deps import Embeddings, Tenant

router = APIRouter(tags=["models"])


def _model(model_id: str, owned_by: str, created: int) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


@router.get("/v1/models")
async def list_models(request: Request, _tenant: Tenant, embeddings: Embeddings) -> Response:
    models = [*await request.app.state.providers.list_models(), *embeddings.models()]
    return JSONResponse({"object": "list", "data": [_model(m.id, m.owned_by, m.created) for m in models]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(
    model_id: str, request: Request, _tenant: Tenant, embeddings: Embeddings
) -> Response:
    for m in [*embeddings.models(), *await request.app.state.providers.list_models()]:
        if m.id == model_id:
            return JSONResponse(_model(m.id, m.owned_by, m.created))
    raise NotFoundError(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
