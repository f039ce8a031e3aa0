"""A worker process of tests/test_prometheus.py's host test: its own manager, a known
workload, a SnapshotWriter into a shared directory. Prints one JSON line (its own
get_metrics(), get_model_info() and histogram buckets), then, by mode, exits ("exit": the
atexit hook writes the final snapshot) or waits until its stdin closes ("wait").

    python tests/prom_worker.py DIRECTORY INDEX MODE
"""

from __future__ import annotations

import json
import sys
from typing import Any

from agenticaiframework.llms import LLMError, LLMManager, ProviderTimeoutError
from agenticaiframework.llms.prometheus import DEFAULT_BUCKETS, SnapshotWriter


def build(index: int) -> LLMManager:
    llm = LLMManager(max_retries=2, failure_threshold=3, sleep=lambda s: None)
    seen: dict[str, int] = {}

    def primary(prompt: str, kwargs: dict[str, Any]) -> str:
        seen[prompt] = seen.get(prompt, 0) + 1
        if prompt.startswith("down") or (prompt.startswith("once") and seen[prompt] == 1):
            raise ProviderTimeoutError("primary timed out")
        return f"primary: {prompt}"

    def backup(prompt: str, kwargs: dict[str, Any]) -> str:
        if prompt.startswith("down-all"):
            raise ProviderTimeoutError("backup timed out")
        return f"backup: {prompt}"

    llm.register_model("primary", primary, {"cost_per_1k_tokens": 0.002})
    llm.register_model("backup", backup)
    llm.set_active_model("primary")
    llm.set_fallback_chain(["primary", "backup"])
    return llm


def workload(llm: LLMManager, index: int) -> None:
    """Worker ``index``: more of everything the higher its index."""
    for i in range(3 + 2 * index):
        llm.generate(f"hello {i}")
        llm.generate(f"hello {i}")  # a hit
    for i in range(index + 1):
        llm.generate(f"once {index} {i}")  # a retry
    for i in range(index):
        llm.generate(f"down {i}")  # fallback (the breaker may open)
    "".join(llm.stream(f"stream {index}"))
    if index == 2:
        try:
            llm.generate("down-all")
        except LLMError:
            pass


def main() -> None:
    directory, index, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    llm = build(index)
    # Kept alive by its atexit hook, which writes the final snapshot.
    SnapshotWriter(llm, directory=directory, interval=0.05)
    workload(llm, index)
    models = {}
    for name in llm.list_models():
        stats = llm._models[name].stats
        models[name] = {
            "info": llm.get_model_info(name),
            "latency": stats.latency_buckets(DEFAULT_BUCKETS),
            "ttfc": stats.ttfc_buckets(DEFAULT_BUCKETS),
        }
    print(json.dumps({"metrics": llm.get_metrics(), "models": models}), flush=True)
    if mode == "wait":
        sys.stdin.read()  # until the parent closes it (or kills this process)


if __name__ == "__main__":
    main()
