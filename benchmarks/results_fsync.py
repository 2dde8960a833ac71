"""Measure what fsync per record costs the results file.

Writes N records of a realistic size through `ResultsWriter` with fsync on and
off, into a temporary folder on the file system the results would live on. Prints
microseconds per record.

    .venv/bin/python benchmarks/results_fsync.py [--records N] [--folder PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from chirp_jobs.results import ResultsWriter


def _record(index: int) -> dict[str, Any]:
    key = f"bench:{index:016x}:0"
    return {
        "key": key,
        "job": "bench",
        "runId": "20261204T120000Z-abcdef",
        "target": "http://127.0.0.1:8787",
        "outcome": "created",
        "httpStatus": 201,
        "request": {
            "from": "+15550100100",
            "to": f"+1555{index:07d}",
            "fromChannel": "pstn",
            "toChannel": "pstn",
            "metadata": {"chirpJobsKey": key, "chirpJobsRun": "r"},
        },
        "call": {"id": "call_test_" + "a" * 27, "status": "initiated"},
        "error": None,
        "attempts": 1,
        "sentAt": "2026-12-04T12:00:00.000Z",
        "finishedAt": "2026-12-04T12:00:00.050Z",
        "origin": {"file": "jobs/bench.yaml", "call": 0, "recipient": 0, "repeat": 0},
    }


def measure(folder: Path, records: int, fsync: bool) -> float:
    """Return microseconds per record written with `fsync` on or off."""
    path = folder / f"fsync-{fsync}-{time.monotonic_ns()}.jsonl"
    lines = [_record(index) for index in range(records)]
    with ResultsWriter(path, fsync=fsync) as writer:
        started = time.perf_counter()
        for line in lines:
            writer.write(line)
        elapsed = time.perf_counter() - started
    return elapsed / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=options.folder) as folder:
        for fsync in (False, True):
            samples = [
                measure(Path(folder), options.records, fsync)
                for _ in range(options.repeats)
            ]
            print(
                f"fsync={'on ' if fsync else 'off'}: "
                f"{statistics.median(samples):8.1f} µs per record "
                f"(median of {options.repeats} runs of {options.records} records)"
            )


if __name__ == "__main__":
    main()
