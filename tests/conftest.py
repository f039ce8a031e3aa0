"""Hypothesis profiles: CI runs a fixed, derandomised search so main stays green on the
same code; developers get fresh random examples on every run."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# A real redis-server for the fleet tier's tests (tests/redis_server.py).
from redis_server import redis_clu, redis_cluster, redis_server, redis_srv  # noqa: E402, F401
