"""Run settings from three places, in this order of precedence.

1. A command-line flag.
2. A `CHIRP_*` environment variable (click reads it into the same option).
3. The job file's `settings` section.

A setting given in none of them takes its default from `DEFAULTS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .jobs import Job
from .run import DEFAULT_RESULTS, SANDBOX_RESULTS_SUFFIX
from .runner import DEFAULT_CONCURRENCY, DEFAULT_RATE
from .sharding import Shard, shard_results_template

DEFAULTS: dict[str, Any] = {
    "results": DEFAULT_RESULTS,
    "rate": DEFAULT_RATE,
    "concurrency": DEFAULT_CONCURRENCY,
    "timeout": 10.0,
}


def resolve_setting(name: str, given: Any, job: Job) -> Any:
    """Return `given` (a flag or environment value), else the job's or the default."""
    if given is not None:
        return given
    return job.settings.get(name, DEFAULTS[name])


def resolve_results_template(
    given: str | None,
    job: Job,
    job_path: Path,
    shard: Shard | None,
    sandbox: bool = False,
) -> str:
    """Return the results path template, before its date and run placeholders.

    A relative `settings.results` in a job file is relative to the job file's
    folder, so the job finds its results from any working folder. A relative
    `--results` or `CHIRP_RESULTS`, and the default, are relative to the working
    folder, as paths on a command line are. Unless `--results` or `CHIRP_RESULTS`
    names the file, a sandbox run writes beside the real one with `.sandbox`
    before the extension, so trials never mix with real results.
    """
    if given is not None:
        template = given
    else:
        if "results" in job.settings:
            template = str(job_path.parent / job.settings["results"])
        else:
            template = DEFAULT_RESULTS
        if sandbox:
            template = _sandbox_template(template)
    return shard_results_template(template, shard)


def _sandbox_template(template: str) -> str:
    path = Path(template)
    return str(path.with_name(path.stem + SANDBOX_RESULTS_SUFFIX + path.suffix))
