"""Pacing: a run at default settings against a sandbox enforcing R requests a second.

The sandbox answers 429 with Retry-After once a key goes past R requests in a
second. `chirp-jobs run` with no --rate or --concurrency must reach at least 95% of
R, with fewer than 1% of its requests answered 429. The achieved rate is counted
on the sandbox: created calls over the time from the first to the last request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import CHIRP_JOBS, TEST_KEY, ratio_line, write_recipient_job

from chirp_jobs.sandbox import Sandbox, SandboxConfig, start_server

RATE_TARGET = 0.95
REJECTED_TARGET = 0.01


class RecordingSandbox(Sandbox):
    """A sandbox that notes the time and status of every request it answers."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.answers: list[tuple[float, int]] = []
        self._answers_lock = threading.Lock()

    def handle(self, *args: Any, **kwargs: Any) -> Any:
        response = super().handle(*args, **kwargs)
        with self._answers_lock:
            self.answers.append((time.monotonic(), response.status))
        return response


def measure(
    rate: int, seconds: float, folder: Path, timeout: float
) -> tuple[float, float]:
    """Return the achieved rate over `rate`, and the share of 429 answers."""
    config = SandboxConfig(enforce_rate_limit=True, rate_limit_per_second=rate)
    sandbox = RecordingSandbox(config)
    server = start_server(sandbox, "127.0.0.1", 0)
    calls = int(rate * seconds)
    job = write_recipient_job(folder / f"pacing-{rate}.yaml", f"pacing-{rate}", calls)
    command = [
        CHIRP_JOBS,
        "run",
        str(job),
        "-q",
        "--base-url",
        server.url,
        "--results",
        str(folder / f"pacing-{rate}.jsonl"),
    ]
    try:
        subprocess.run(
            command,
            env={**os.environ, "CHIRP_API_KEY": TEST_KEY},
            check=False,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )
    finally:
        server.shutdown()
        server.server_close()
    created = [moment for moment, status in sandbox.answers if status == 201]
    rejected = sum(1 for _, status in sandbox.answers if status == 429)
    if len(created) < 2:
        return 0.0, 1.0
    achieved = (len(created) - 1) / (created[-1] - created[0])
    return achieved / rate, rejected / len(sandbox.answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="20,50", help="R values, requests a second")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each run"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        for rate in (int(text) for text in args.rates.split(",")):
            share, rejected = measure(rate, args.seconds, Path(temporary), args.timeout)
            print(f"R = {rate}/s:")
            print(
                ratio_line(
                    "  achieved rate over R",
                    share,
                    f">= {RATE_TARGET}",
                    share >= RATE_TARGET,
                )
            )
            print(
                ratio_line(
                    "  share answered 429",
                    rejected,
                    f"< {REJECTED_TARGET}",
                    rejected < REJECTED_TARGET,
                )
            )


if __name__ == "__main__":
    main()
