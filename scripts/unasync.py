"""Generates the sync drivers from the async ones, as httpcore does (its scripts/unasync.py).

    python scripts/unasync.py           # writes python/agenticaiframework/llms/_drive_sync.py
    python scripts/unasync.py --check   # exits 1 if the generated file is not current

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
SOURCE = ROOT / "python/agenticaiframework/llms/_drive_async.py"
TARGET = ROOT / "python/agenticaiframework/llms/_drive_sync.py"

NAMES = {
    "_io_async": "_io_sync",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "wait_async": "wait",
    "inline_async": "inline_sync",
    "astream_route": "stream_route",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}
HEADER = (
    "# Generated from _drive_async.py by scripts/unasync.py: do not edit; edit that file\n"
    "# and run `make unasync` (`make lint` checks this file is current).\n"
)
_NAME = re.compile(r"\b(" + "|".join(re.escape(k) for k in NAMES) + r")\b")
_SYNC_ONLY = re.compile(r"^(\s*)(.*?)\s*# sync-only: (.*?)(\s+# noqa: \w+)?$")


def unasync_line(line: str) -> str | None:
    if line.rstrip().endswith("# async-only"):
        return None
    m = _SYNC_ONLY.match(line)
    if m is not None:
        return m.group(1) + m.group(3)
    line = re.sub(r"\basync (def|for|with)\b", r"\1", line)
    line = re.sub(r"\bawait ", "", line)
    return _NAME.sub(lambda n: NAMES[n.group(1)], line)


SYNC_DOC = '''"""The sync drivers: the twin of ``_drive_async.py``, generated from it."""'''


def generate() -> str:
    source = SOURCE.read_text()
    # The module docstring describes the source; the twin gets its own, untransformed.
    end = source.index('"""', 3) + 3
    lines = source[end:].splitlines()
    out = [SYNC_DOC] + [x for x in (unasync_line(line) for line in lines) if x is not None]
    text = HEADER + "\n".join(out) + "\n"
    ruff = Path(sys.executable).with_name("ruff")
    cmd = [str(ruff) if ruff.exists() else "ruff", "format", "--stdin-filename", str(TARGET), "-"]
    done = subprocess.run(cmd, input=text, capture_output=True, text=True, check=True, cwd=ROOT)
    return done.stdout


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `make unasync`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
