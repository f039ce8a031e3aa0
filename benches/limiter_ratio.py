"""One RateLimiter.try_acquire() beside one dict lookup, timed in the same process,
interleaved, and their ratio (the goal: within 2x).

    .venv/bin/python benches/limiter_ratio.py [--rounds 15] [--n 200000]
    valgrind --tool=callgrind .venv/bin/python benches/limiter_ratio.py --callgrind limiter --n N
    (and --callgrind dict; Ir per call = (Ir at N2 - Ir at N1) / (N2 - N1))

Each round times a loop of N calls of each (the bound method taken once, as a hot caller
would), alternating which runs first; reported: the median ns per call of each and the
median of the per-round ratios. The limiter is rpm=1e9 on the native clock, so every
call is admitted and its atomic word moves (a real CAS, not a refusal's read).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from agenticaiframework._native import RateLimiter


def loop_ns(f: object, arg: object, n: int) -> float:
    t0 = time.perf_counter_ns()
    if arg is None:
        for _ in range(n):
            f()  # type: ignore[operator]
    else:
        for _ in range(n):
            f(arg)  # type: ignore[operator]
    return (time.perf_counter_ns() - t0) / n


def empty_ns(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    return (time.perf_counter_ns() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--callgrind", choices=["limiter", "dict"], help="run N calls of one only")
    args = ap.parse_args()
    key = "Explain circuit breakers briefly."
    d = {key: "ok"}
    get = d.__getitem__
    acquire = RateLimiter(rpm=1e9).try_acquire
    if args.callgrind:
        f, a = (acquire, None) if args.callgrind == "limiter" else (get, key)
        loop_ns(f, a, args.n)
        return
    lim_ns, dict_ns, ratios = [], [], []
    for r in range(args.rounds):
        order = [(acquire, None), (get, key)] if r % 2 else [(get, key), (acquire, None)]
        got = {}
        for f, a in order:
            got[f is acquire] = loop_ns(f, a, args.n) - empty_ns(args.n)
        lim_ns.append(got[True])
        dict_ns.append(got[False])
        ratios.append(got[True] / got[False])
    ml, md, mr = statistics.median(lim_ns), statistics.median(dict_ns), statistics.median(ratios)
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.n} calls")
    print(f"dict d[k]              {md:7.1f} ns/call")
    print(f"RateLimiter.try_acquire {ml:6.1f} ns/call")
    print(f"ratio (median of rounds) {mr:.2f}x  (goal <= 2x)")


if __name__ == "__main__":
    main()
