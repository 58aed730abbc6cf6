"""The OpenAI-compatible API: GET /v1/models (the one model) and POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter

from server.completions import complete
from server.dependencies import Linker, ServicesDep, User
from server.errors import ERROR_RESPONSES
from server.protocol import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList

router = APIRouter(tags=["openai"], responses=ERROR_RESPONSES)


@router.get("/v1/models", response_model=ModelList)
async def models(services: ServicesDep, principal: User) -> ModelList:
    return ModelList(data=[ModelCard(id=services.settings.server_model_name, created=services.created)])


@router.post("/v1/chat/completions", response_model=ChatCompletion,
             summary="OpenAI-compatible chat completions (text and image_url parts; stream true or false).")
async def chat_completions(body: ChatCompletionRequest, services: ServicesDep, principal: User, link: Linker):
    return await complete(services, body, link)
