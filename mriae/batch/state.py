"""The state log of a job, ``OUTPUT/.mriae-batch-state.jsonl``: one JSON line per finished
file (its record, with the settings it was made with), appended by the task that made the
output, right after the output is in place. A job stopped at any point (Ctrl-C, a lost
worker) therefore knows every output it made, and a re-run skips or redoes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_FILE = ".mriae-batch-state.jsonl"


def load_state(output_root: Path) -> dict[str, dict]:
    """Latest state entry per source path (later lines win)."""
    path = output_root / STATE_FILE
    entries: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill: ignore it
            entries[entry["path"]] = entry
    return entries


def append_state(output_root: Path, entry: dict) -> None:
    """Append ``entry`` as one line, in one ``write`` to a file opened for appending, so that
    lines of tasks finishing at the same time do not interleave."""
    line = (json.dumps(entry) + "\n").encode("utf-8")
    descriptor = os.open(output_root / STATE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
