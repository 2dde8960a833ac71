"""Run calls against the sandbox served on loopback, with no rate limit enforced.

`chirp-jobs run`, with its results file, is compared with two baselines measured in
the same run, which send the same bodies to the same server. The first is a bare
`httpx.AsyncClient` loop at the same concurrency with no results file (target: at
least its requests per second). The second is a shell loop of one `curl` per call
(target: at least 10 times its requests per second). Each client runs as a process
of its own, and the sandbox runs as `chirp-jobs sandbox`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import (
    CHIRP_JOBS,
    TEST_KEY,
    outcome_counts,
    ratio_line,
    run_timed,
    sandbox_process,
    write_recipient_job,
)

HTTPX_TARGET = 1.0
CURL_TARGET = 10.0
# Bodies of the same shape as the plan's: from, to, channels and metadata with a
# plan key and a run id.
HTTPX_LOOP = """
import asyncio, sys, httpx
base_url, key = sys.argv[1], sys.argv[2]
calls, concurrency = int(sys.argv[3]), int(sys.argv[4])

def bodies():
    for i in range(calls):
        yield {"from": "+15550100100", "to": f"+1555{i:07d}", "fromChannel": "pstn",
               "toChannel": "pstn", "metadata": {"purpose": "benchmark",
               "chirpJobsKey": f"bench-run:{i:016x}:0", "chirpJobsRun": "bench"}}

async def worker(client, source, statuses):
    for body in source:
        response = await client.post("/v1/calls", json=body)
        statuses.append(response.status_code)

async def main():
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency
    )
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    source = bodies()
    client = httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits)
    async with client:
        workers = [worker(client, source, statuses) for _ in range(concurrency)]
        await asyncio.gather(*workers)
    if statuses.count(201) != calls:
        sys.exit(f"expected {calls} responses 201, got {len(statuses)}")

asyncio.run(main())
"""


def curl_loop(base_url: str, calls: int) -> list[str]:
    body = json.dumps(
        {
            "from": "+15550100100",
            "to": "+15550100131",
            "fromChannel": "pstn",
            "toChannel": "pstn",
            "metadata": {"purpose": "benchmark"},
        }
    )
    script = (
        f"for i in $(seq {calls}); do curl -sS -o /dev/null --fail "
        f"-H 'Authorization: Bearer {TEST_KEY}' -H 'Content-Type: application/json' "
        f"--data '{body}' {base_url}/v1/calls || exit 1; done"
    )
    return ["bash", "-c", script]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--curl-calls", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    env = {**os.environ, "CHIRP_API_KEY": TEST_KEY}
    # The runner spreads its requests by the X-RateLimit-* headers, so the
    # sandbox reports a limit far above what a benchmark can send.
    unlimited = sandbox_process("--rate-limit", "100000000")
    with tempfile.TemporaryDirectory() as temporary, unlimited as base_url:
        folder = Path(temporary)
        job = write_recipient_job(folder / "run.yaml", "bench-run", args.calls)
        results = folder / "results.jsonl"
        ours = [
            CHIRP_JOBS,
            "run",
            str(job),
            "-q",
            "--base-url",
            base_url,
            "--rate",
            "1000000",
            "--concurrency",
            str(args.concurrency),
            "--results",
            str(results),
        ]
        chirp_seconds = run_timed(ours, env=env)[0]
        counts = outcome_counts(results)
        if counts != {"created": args.calls}:
            sys.exit(f"error: expected {args.calls} created outcomes, got {counts}")

        loop = [
            sys.executable,
            "-c",
            HTTPX_LOOP,
            base_url,
            TEST_KEY,
            str(args.calls),
            str(args.concurrency),
        ]
        httpx_seconds = run_timed(loop)[0]

        curl_rate = None
        if shutil.which("curl") and args.curl_calls:
            curl_seconds = run_timed(curl_loop(base_url, args.curl_calls))[0]
            curl_rate = args.curl_calls / curl_seconds

    chirp_rate = args.calls / chirp_seconds
    httpx_rate = args.calls / httpx_seconds
    print(f"calls: {args.calls:,} at concurrency {args.concurrency}")
    print(f"chirp-jobs run (results file on): {chirp_rate:,.0f} requests/s")
    print(f"bare httpx.AsyncClient loop:      {httpx_rate:,.0f} requests/s")
    ratio = chirp_rate / httpx_rate
    print(
        ratio_line(
            "chirp-jobs over httpx loop",
            ratio,
            f">= {HTTPX_TARGET}",
            ratio >= HTTPX_TARGET,
        )
    )
    if curl_rate is None:
        print("curl loop: skipped (curl not found)")
        return
    print(
        f"curl loop ({args.curl_calls:,} calls):           {curl_rate:,.0f} requests/s"
    )
    ratio = chirp_rate / curl_rate
    print(
        ratio_line(
            "chirp-jobs over curl loop",
            ratio,
            f">= {CURL_TARGET}",
            ratio >= CURL_TARGET,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
