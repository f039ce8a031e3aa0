"""What ``get_metrics()`` and ``get_model_info()`` return, as typed dicts, and the shape of
an inference function: so that ``m["sucess_rate"]`` or a model returning an int is a type
error, not a surprise in production.

>>> from agenticaiframework.llms import LLMManager
>>> m = LLMManager()
>>> m.register_model("echo", lambda prompt, kwargs: prompt)
>>> sorted(m.get_model_info("echo")["stats"])[:3]
['avg_latency', 'cancelled', 'completion_tokens']
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Literal, Protocol, TypeAlias, TypedDict

from .response import LLMResponse

BreakerState: TypeAlias = Literal["closed", "open", "half-open"]
Answer: TypeAlias = "str | LLMResponse"


class SyncInferenceFn(Protocol):
    """``fn(prompt, kwargs) -> str | LLMResponse``: ``kwargs`` is a dict of the request's
    keyword arguments (``temperature=0.2`` arrives as ``{"temperature": 0.2}``)."""

    def __call__(self, prompt: str, kwargs: dict[str, Any], /) -> str | LLMResponse: ...


class AsyncInferenceFn(Protocol):
    """``async def fn(prompt, kwargs) -> str | LLMResponse``."""

    def __call__(self, prompt: str, kwargs: dict[str, Any], /) -> Awaitable[str | LLMResponse]: ...


# What register_model() and add_deployment() take.
InferenceFn: TypeAlias = "SyncInferenceFn | AsyncInferenceFn"


class ModelStatsReport(TypedDict):
    """A model's counters (``get_model_info(name)["stats"]``). Latencies are seconds,
    per attempt; ``cost`` (USD) only for a model with ``cost_per_1k_*tokens`` metadata."""

    requests: int  # attempts made (retries included)
    successes: int
    failures: int
    cancelled: int
    retries: int  # attempts after the model's first for a request
    short_circuits: int  # attempts refused by an open breaker (no call made)
    hedged_requests: int  # hedges started on this model (hedging.py)
    hedge_wins: int  # of those, the ones that answered first
    streams: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    avg_latency: float
    p50_latency: float
    p95_latency: float
    p99_latency: float
    p50_time_to_first_chunk: float
    p95_time_to_first_chunk: float


class PricedModelStatsReport(ModelStatsReport, total=False):
    cost: float


class DeploymentInfo(TypedDict):
    """One deployment of a model (``get_model_info(name)["deployments"][i]``)."""

    deployment: str
    weight: float
    metadata: dict[str, Any]  # secret-looking values masked
    stats: PricedModelStatsReport
    circuit_breaker_state: BreakerState
    failure_count: int


class _ModelInfo(TypedDict):
    name: str
    metadata: dict[str, Any]  # secret-looking values masked
    stats: PricedModelStatsReport  # with deployments: their sums (percentiles: the slowest)
    circuit_breaker_state: BreakerState
    failure_count: int  # consecutive failures the breaker has counted
    is_async: bool


class ModelInfo(_ModelInfo, total=False):
    """``get_model_info(name)``; ``deployments`` and ``routing`` only for a model with
    several deployments (``add_deployment``)."""

    deployments: list[DeploymentInfo]
    routing: str


class Metrics(TypedDict):
    """``get_metrics()``: the manager's request-level totals since start (or
    ``reset_metrics()``). A cache hit is a request and a success; once every call has
    finished, ``total_requests == successful_requests + failed_requests +
    cancelled_requests``."""

    total_requests: int
    successful_requests: int
    failed_requests: int
    cancelled_requests: int
    cache_hits: int  # L1 (in process)
    cache_misses: int  # requests that missed L1; twins that waited on one call count too
    coalesced_requests: int  # misses answered by a twin's call (single-flight)
    total_retries: int
    fallbacks: int  # moves to the next model of a route
    total_tokens: int
    deadline_exceeded: int  # failed requests that ran out of their deadline (deadline=)
    retries_denied: int  # retries the retry budget refused: moved to the next model instead
    # Whole requests' latency in seconds (backoff, retries and fallbacks included), of
    # those that made a first try or walked a route: cache hits and coalesced twins are
    # not timed (0.0 before any).
    p50_request_latency: float
    p95_request_latency: float
    p99_request_latency: float
    success_rate: float  # successful / total (0.0 before any request)
    cache_hit_rate: float  # cache_hits / total
    cache_size: int  # entries in L1
    active_model: str | None
    fallback_chain: list[str]
    l2_hits: int  # the fleet's Redis (0 without redis=)
    l2_misses: int
    fleet_errors: int
    total_cost: float  # USD over every priced model (metadata cost_per_1k_*tokens)
    breaker_states: dict[str, BreakerState]  # by model (several deployments: as get_model_info)
