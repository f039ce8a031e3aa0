"""Generates the sync drivers from the async ones, as httpcore does (its scripts/unasync.py).

    python scripts/unasync.py           # writes the sync twins (FILES below)
    python scripts/unasync.py --check   # exits 1 if a generated file is not current

Why generate: the route walk's drivers must exist twice (a blocking call and an awaited
one cannot share a function body in Python), and two hand-written copies drift. One text,
``_drive_async.py``, is the source; the rules below make its twin:

- ``async def`` / ``async for`` / ``async with`` lose ``async``; ``await `` is dropped;
- the names in ``NAMES`` are read as their sync twins (``_io_async`` -> ``_io_sync``, ...);
- a line ending in ``# async-only`` is left out;
- a line ending in ``# sync-only: CODE`` is written as CODE (same indent), and a line that
  is only ``# sync-only: CODE`` adds CODE;
- the result is formatted by ruff, as every file of the package is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLMS = ROOT / "python/agenticaiframework/llms"

NAMES = {
    "_io_async": "_io_sync",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "wait_async": "wait",
    "inline_async": "inline_sync",
    "direct_async": "direct_sync",
    "astream_route": "stream_route",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}
# (source, twin, its docstring, names of its own)
FILES = [
    (
        LLMS / "_drive_async.py",
        LLMS / "_drive_sync.py",
        "The sync drivers: the twin of ``_drive_async.py``, generated from it.",
        {
            "aget": "get",
            "alanded": "landed",
            "aput": "put",
            "alead": "lead",
            "aawait_answer": "await_answer",
            "afinish": "finish",
        },
    ),
    (
        LLMS / "providers/_adapter_async.py",
        LLMS / "providers/_adapter_sync.py",
        "The sync adapter: the twin of ``_adapter_async.py``, generated from it.",
        {"AsyncAdapter": "Adapter", "astream": "stream", "agather": "gather"},
    ),
]


def _names(own: dict[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    names = {**NAMES, **own}
    return re.compile(r"\b(" + "|".join(re.escape(k) for k in names) + r")\b"), names


_SYNC_ONLY = re.compile(r"^(\s*)(.*?)\s*# sync-only: (.*?)(\s+# noqa: \w+)?$")


def unasync_line(line: str, names: tuple[re.Pattern[str], dict[str, str]]) -> str | None:
    if line.rstrip().endswith("# async-only"):
        return None
    m = _SYNC_ONLY.match(line)
    if m is not None:
        return m.group(1) + m.group(3)
    line = re.sub(r"\basync (def|for|with)\b", r"\1", line)
    line = re.sub(r"\bawait ", "", line)
    pattern, table = names
    return pattern.sub(lambda n: table[n.group(1)], line)


HEADER = (
    "# Generated from {source} by scripts/unasync.py: do not edit; edit that file\n"
    "# and run `make unasync` (`make lint` checks this file is current).\n"
)


def generate(source: Path, target: Path, doc: str, own: dict[str, str]) -> str:
    text = source.read_text()
    # The module docstring describes the source; the twin gets its own, untransformed.
    end = text.index('"""', 3) + 3
    names = _names(own)
    out = [f'"""{doc}"""'] + [
        x for x in (unasync_line(line, names) for line in text[end:].splitlines()) if x is not None
    ]
    body = HEADER.format(source=source.name) + "\n".join(out) + "\n"
    ruff = Path(sys.executable).with_name("ruff")
    cmd = [str(ruff) if ruff.exists() else "ruff", "format", "--stdin-filename", str(target), "-"]
    done = subprocess.run(cmd, input=body, capture_output=True, text=True, check=True, cwd=ROOT)
    return done.stdout


def main() -> int:
    stale = 0
    for source, target, doc, own in FILES:
        text = generate(source, target, doc, own)
        if "--check" not in sys.argv[1:]:
            target.write_text(text)
        elif not target.exists() or target.read_text() != text:
            print(f"{target.relative_to(ROOT)} is stale: run `make unasync`", file=sys.stderr)
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
