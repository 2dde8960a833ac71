"""Helpers shared by the benchmark scripts: timing, peak memory, job files, servers.

Every script measures its baseline in the same run and prints the ratio, because
absolute times on a shared machine vary by 10% or more from run to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CHIRP_JOBS = str(BIN / "chirp-jobs")
# A fake test key: the sandbox accepts any sk_test_app_ key.
TEST_KEY = "sk_test_app_fake123"
# Each subprocess is stopped after this many seconds, so no benchmark hangs.
COMMAND_TIMEOUT_SECONDS = 600


def tool(name: str) -> str:
    """Return the path of a console script installed beside this Python, or exit."""
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        sys.exit(
            f"error: {name} not found; install the bench extra: "
            "pip install -e '.[bench]'"
        )
    return on_path


def run_timed(
    command: Sequence[str],
    stdout: Any = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> tuple[float, int, int]:
    """Run `command`; return its wall time in seconds, peak RSS in KiB and exit code."""
    # stderr goes to a file, so a chatty command cannot fill a pipe and block.
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=errors, env=env)
        # A blocking wait4 keeps the parent asleep, so it takes no CPU time from
        # the command it measures; the timer kills a command that hangs.
        killer = threading.Timer(COMMAND_TIMEOUT_SECONDS, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        elapsed = time.perf_counter() - started
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            sys.exit(f"error: timed out after {COMMAND_TIMEOUT_SECONDS} s: {command}")
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if check and process.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {process.returncode}:\n{stderr}")
    return elapsed, usage.ru_maxrss, process.returncode


def median_time(run: Callable[[], float], repeats: int) -> float:
    return statistics.median(run() for _ in range(repeats))


def ratio_line(name: str, value: float, target: str, met: bool) -> str:
    verdict = "meets" if met else "MISSES"
    return f"{name}: {value:.2f} ({verdict} target {target})"


def write_recipient_job(
    path: Path, name: str, recipients: int, repeat: int = 1, first: int = 0
) -> Path:
    """Write a YAML job with one call to `recipients` distinct numbers, repeated."""
    numbers = ",".join(f'"+1555{first + i:07d}"' for i in range(recipients))
    repeat_line = f"    repeat: {repeat}\n" if repeat > 1 else ""
    path.write_text(
        "version: 1\n"
        f"name: {name}\n"
        f"maxPlannedCalls: {max(recipients * repeat, 1)}\n"
        "defaults:\n"
        '  from: "+15550100100"\n'
        "  metadata: {purpose: benchmark}\n"
        "calls:\n"
        f"  - to: [{numbers}]\n"
        f"{repeat_line}",
        encoding="utf-8",
    )
    return path


@contextmanager
def sandbox_process(*options: str) -> Iterator[str]:
    """Serve `chirp-jobs sandbox` on a free loopback port; yield its base URL."""
    process = subprocess.Popen(
        [CHIRP_JOBS, "sandbox", "--host", "127.0.0.1", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if match is None:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for _ in stream)


def outcome_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            outcome = json.loads(line)["outcome"]
            # Progress records (intent, not_placed) are not outcomes.
            if outcome in ("intent", "not_placed"):
                continue
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts
