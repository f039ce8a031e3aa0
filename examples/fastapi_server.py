"""An LLM endpoint behind FastAPI: one manager per worker process, created at start-up.

    pip install fastapi uvicorn prometheus_client   # and this package (README: Installing)
    uvicorn examples.fastapi_server:app --port 8000 --workers 2

    curl -s localhost:8000/generate -H 'content-type: application/json' \\
         -d '{"prompt": "Explain circuit breakers"}'
    curl -s localhost:8000/metrics          # Prometheus text exposition
    curl -s localhost:8000/stats            # get_metrics() as JSON

Each worker builds its own LLMManager in the lifespan (never at import in a preloading
master: a forked child is safe, but each worker should own its manager, counters and
pools). The handler awaits ``agenerate(..., deadline=REQUEST_DEADLINE)``: the whole
request, retries, backoff and fallbacks included, shares that budget (a wait that would
outlast it moves to the next model, an attempt is cut at it), and a request that misses
it answers 504 (the manager counts it in ``deadline_exceeded``). The models here are simulated
(``SimulatedModel``) so the example runs without keys; swap in ``openai_chat(...)`` /
``anthropic_messages(...)`` from ``agenticaiframework.llms.providers``.

Defaults for a request handler differ from a batch job's: a user is waiting, so keep the
backoff short (``backoff_base`` 0.1-0.25 s, ``backoff_max`` about 1 s, jitter on),
``max_retries`` 2-3, trip a failing model quickly and probe it again soon
(``failure_threshold`` 3-5, ``recovery_timeout`` 10-30 s) and let the fallback chain
answer meanwhile. A batch job has no one waiting: the library's defaults
(``backoff_base=1``, ``backoff_max=60``, ``recovery_timeout=60``) ride out a provider's
incident instead of failing over. Several workers or hosts: ``redis=`` (the fleet tier)
shares the cache, single-flight and breakers; ``/metrics`` then needs a SnapshotWriter per
worker and a HostCollector (README: Prometheus).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from agenticaiframework.llms import (
    AllModelsFailedError,
    DeadlineExceededError,
    LLMManager,
    NoModelConfiguredError,
)
from agenticaiframework.llms.prometheus import LLMCollector
from agenticaiframework.llms.providers.simulated import SimulatedModel

# Seconds a whole request may take, retries and backoff included.
REQUEST_DEADLINE = float(os.environ.get("REQUEST_DEADLINE", "5"))
# The simulated providers' latency scale (the tests make it small).
TIME_SCALE = float(os.environ.get("TIME_SCALE", "1"))


def build_manager() -> LLMManager:
    """Defaults for request handling: short backoff, quick to trip, quick to probe again."""
    llm = LLMManager(
        max_retries=2,
        backoff_base=0.1,
        backoff_max=1.0,
        jitter="full",
        failure_threshold=3,
        recovery_timeout=15,
        cache_ttl=300,
    )
    llm.register_model(
        "gpt-4o",
        SimulatedModel("gpt-4o", latency=0.02 * TIME_SCALE, failure_rate=0.1, seed=1).as_async(),
        {"timeout": 2.0, "cost_per_1k_tokens": 0.005},
    )
    llm.register_model(
        "claude",
        SimulatedModel("claude", latency=0.03 * TIME_SCALE, failure_rate=0.0, seed=2).as_async(),
        {"timeout": 2.0, "cost_per_1k_tokens": 0.003},
    )
    llm.set_active_model("gpt-4o")
    llm.set_fallback_chain(["claude"])
    return llm


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    llm = build_manager()
    registry = CollectorRegistry()
    registry.register(LLMCollector(llm))
    app.state.llm, app.state.registry = llm, registry
    yield


app = FastAPI(lifespan=lifespan)


class Ask(BaseModel):
    prompt: str
    temperature: float = 0.2


class Answer(BaseModel):
    text: str


@app.post("/generate")
async def generate(ask: Ask, request: Request) -> Answer:
    llm: LLMManager = request.app.state.llm
    try:
        # Bounds the whole request: every attempt, wait and fallback inside it.
        text = await llm.agenerate(
            ask.prompt, temperature=ask.temperature, deadline=REQUEST_DEADLINE
        )
    except DeadlineExceededError:
        raise HTTPException(504, "the models did not answer in time") from None
    except (AllModelsFailedError, NoModelConfiguredError) as exc:
        # The message lists each model's failure (secrets scrubbed); a public API would
        # log it and answer less.
        raise HTTPException(503, str(exc)) from None
    return Answer(text=text)


@app.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


@app.get("/stats")
def stats(request: Request) -> dict[str, object]:
    return dict(request.app.state.llm.get_metrics())


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
