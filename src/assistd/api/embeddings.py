"""/v1/embeddings"""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..protocol.embeddings import EmbeddingCreateParams
from .deps import Embeddings, Tenant

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings")
async def create_embeddings(
    params: EmbeddingCreateParams, _tenant: Tenant, embeddings: Embeddings
) -> Response:
    return Response(await embeddings.create(params), media_type="application/json")
