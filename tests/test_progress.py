"""The progress bar: drawn on a terminal, absent elsewhere."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
from pathlib import Path

from chirp_jobs.progress import ProgressBar

from .conftest import SCRIPT, WriteJob

JOB = """
version: 1
name: progress
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122", "+15550100123"]
  - from: "+15550100199"
    to: "+15550100124"
"""


def _read_all(descriptor: int) -> str:
    chunks = []
    while True:
        ready, _, _ = select.select([descriptor], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_on_terminal(write_job: WriteJob, tmp_path: Path) -> None:
    main_end, child_end = pty.openpty()
    process = subprocess.Popen(
        [
            str(SCRIPT),
            "run",
            "--sandbox",
            "--rate",
            "100",
            "--results",
            str(tmp_path / "r.jsonl"),
            str(write_job(JOB)),
        ],
        stdin=child_end,
        stdout=child_end,
        stderr=child_end,
    )
    os.close(child_end)
    try:
        output = _read_all(main_end)
    finally:
        os.close(main_end)
        process.wait(timeout=30)
    assert process.returncode == 0
    assert "4 created, 0 failed, 0 remaining" in output
    assert "calls/s" in output
    assert "[########################]" in output
    # On a terminal the plan and the summary are printed too.
    assert "By from: +15550100100 3, +15550100199 1" in output
    assert "4 created, 0 failed, 0 unknown of 4 planned calls" in output


def test_no_progress_when_not_terminal(write_job: WriteJob, tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            str(SCRIPT),
            "run",
            "--sandbox",
            "--rate",
            "100",
            "--print",
            "--results",
            str(tmp_path / "r.jsonl"),
            str(write_job(JOB)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0
    assert "remaining" not in completed.stderr
    assert "remaining" not in completed.stdout
    assert "\r" not in completed.stderr


def test_progress_line_counts_and_rate() -> None:
    now = [100.0]
    stream = io.StringIO()
    bar = ProgressBar(4, stream, clock=lambda: now[0])
    for outcome in ("created", "failed", "unknown"):
        now[0] += 0.5
        bar({"outcome": outcome})
    assert bar.line() == (
        "[##################......] 1 created, 1 failed, 1 unknown, "
        "1 remaining, 2.0 calls/s"
    )


def test_progress_rate_follows_recent_calls() -> None:
    now = [0.0]
    bar = ProgressBar(100, io.StringIO(), clock=lambda: now[0])
    for _ in range(40):
        now[0] += 0.1
        bar({"outcome": "created"})
    for _ in range(21):
        now[0] += 1.0
        bar({"outcome": "created"})
    assert bar.line().endswith("39 remaining, 1.0 calls/s")
