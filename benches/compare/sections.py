"""BENCHMARKS.md's marked sections: each standalone benchmark (fleet.py, quota.py, load.py,
../hedging_sim.py, ../retry_budget_sim.py) writes its own, between ``<!-- NAME: begin -->``
and ``<!-- NAME: end -->``, and report.py keeps them all when it rewrites the file."""

from __future__ import annotations

from pathlib import Path


def write(doc_path: Path, begin: str, end: str, text: str) -> None:
    """Puts ``text`` (which starts with ``begin`` and ends with ``end``) in place of the
    marked section, or at the end of the file when it has none yet."""
    doc = doc_path.read_text()
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    doc_path.write_text(doc)
