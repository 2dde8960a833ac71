"""The `run` entry point: settings in, a finished run's summary out."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from .client import SANDBOX_BASE_URL, SandboxTransport, build_client
from .errors import ConfigError
from .jobs import Job
from .planning import PlannedCall, iter_plan
from .results import ResultsWriter
from .runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_RATE,
    RecordListener,
    Runner,
    RunSettings,
    RunSummary,
)
from .sandbox import Sandbox
from .templates import expand_template

API_KEY_VARIABLE = "CHIRP_API_KEY"
SANDBOX_TARGET = "sandbox"
# A key the in-process sandbox accepts; it is a test key, so ids read call_test_...
SANDBOX_API_KEY = "sk_test_app_sandbox"
DEFAULT_RESULTS = "chirp-results/{job}.jsonl"
# Printable ASCII only: httpx cannot send anything else in a header, and would
# raise with a traceback once the run had started.
_APP_KEY = re.compile(r"sk_(?:live|test)_app_[!-~]+")


@dataclass
class RunOptions:
    """Settings of one `chirp-jobs run`. `timeout` is in seconds."""

    results: Path
    base_url: str
    api_key: str | None
    sandbox: bool = False
    timeout: float = 10.0
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    run_id: str = ""

    @property
    def target(self) -> str:
        return SANDBOX_TARGET if self.sandbox else self.base_url


def check_api_key(api_key: str | None) -> str:
    """Return the key if it is an app key, else raise `ConfigError` without it."""
    if not api_key:
        raise ConfigError(
            f"missing API key: set the {API_KEY_VARIABLE} environment variable to an "
            "app key (sk_live_app_... or sk_test_app_...), or pass --sandbox to try "
            "the job against the built-in sandbox"
        )
    if api_key.startswith("sk_admin_"):
        raise ConfigError(
            f"{API_KEY_VARIABLE} contains an admin key, which the calls endpoint "
            "rejects; use an app key (sk_live_app_... or sk_test_app_...)"
        )
    if not _APP_KEY.fullmatch(api_key):
        raise ConfigError(
            f"{API_KEY_VARIABLE} does not look like a Chirp app key: app keys start "
            "with sk_live_app_ or sk_test_app_"
        )
    return api_key


def check_base_url(base_url: str) -> str:
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"invalid base URL {base_url!r}: use http:// or https:// and a host name"
        )
    return base_url.rstrip("/")


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def results_path(template: str, job: Job, run_id: str) -> Path:
    now = datetime.now().astimezone()
    return Path(expand_template(template, now, job.name, run_id))


def execute_job(
    job: Job,
    options: RunOptions,
    transport: httpx.BaseTransport | None = None,
    on_record: RecordListener | None = None,
    plan: Iterable[PlannedCall] | None = None,
) -> RunSummary:
    """Check the settings, then send the job's plan and write its results.

    `plan` replaces the job's whole plan, for a saved plan or one shard. Raises
    `ConfigError` before anything is sent when the key or URL is unusable.
    """
    if options.sandbox:
        api_key = SANDBOX_API_KEY
        base_url = SANDBOX_BASE_URL
        transport = transport or SandboxTransport(Sandbox())
    else:
        api_key = check_api_key(options.api_key)
        base_url = check_base_url(options.base_url)
    settings = RunSettings(
        job=job.name,
        run_id=options.run_id or new_run_id(),
        target=options.target,
        rate=options.rate,
        concurrency=options.concurrency,
    )
    client = build_client(
        base_url,
        api_key,
        options.timeout,
        transport=transport,
        max_connections=options.concurrency,
    )
    with client, ResultsWriter(options.results) as writer:
        runner = Runner(client, writer, settings, on_record=on_record)
        return runner.execute(iter_plan(job) if plan is None else plan)
