"""The state log of a job, ``.mriae-batch-state.jsonl`` in its report folder (beside the
output folder by default, ``OUTPUT.report``): one JSON line per finished file (its record,
with the settings it was made with), appended by the task that made the output, right after
the output is in place. A job stopped at any point (Ctrl-C, a lost worker) therefore knows
every output it made, and a re-run skips or redoes them. Jobs of earlier versions kept their
log inside the output folder; it is still read there, so that they resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_FILE = ".mriae-batch-state.jsonl"
REPORT_SUFFIX = ".report"


def default_report_folder(output_root: Path) -> Path:
    """Where a job's state log and reports go unless it says: beside its output folder,
    ``OUTPUT.report`` (not inside it, which is the dataset)."""
    return output_root.with_name(output_root.name + REPORT_SUFFIX)


def load_state(*folders: Path) -> dict[str, dict]:
    """Latest state entry per source path in the state logs of ``folders`` (later folders
    and later lines win)."""
    entries: dict[str, dict] = {}
    for folder in dict.fromkeys(folders):
        path = folder / STATE_FILE
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill: ignore it
                entries[entry["path"]] = entry
    return entries


def append_state(folder: Path, entry: dict) -> None:
    """Append ``entry`` as one line to the state log in ``folder``, in one ``write`` to a file
    opened for appending, so that lines of tasks finishing at the same time do not interleave."""
    line = (json.dumps(entry) + "\n").encode("utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / STATE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
