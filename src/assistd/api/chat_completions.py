"""/v1/chat/completions: OpenAI's Chat Completions on the providers runs use (``engine/completions.py``)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Response

from ..engine.completions import Completions
from ..protocol.chat_completions import ChatCompletionCreateParams
from .deps import Db, Providers, RunKey
from .sse import chat_stream

router = APIRouter(prefix="/v1/chat", tags=["chat"])


@router.post("/completions")
async def create_chat_completion(
    params: ChatCompletionCreateParams, key: RunKey, providers: Providers, db: Db
) -> Response:
    # ``RunKey``: within the key's request rate and tokens per day, the tokens counted under it.
    completions = Completions(providers, db, key)
    if params.stream:
        return chat_stream(await completions.stream(params))
    body = json.dumps(await completions.create(params), ensure_ascii=False, separators=(",", ":"))
    return Response(content=body.encode(), media_type="application/json")
