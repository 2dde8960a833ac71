"""The planned calls that `run` sends, from a job file or a saved plan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ChirpJobsError
from .jobs import Job
from .planning import PlannedCall, iter_plan
from .saved_plans import is_saved_plan, read_plan
from .sharding import Shard, select_shard
from .validation import load_job


@dataclass(frozen=True)
class PlanSource:
    """A validated job and the planned calls to send from it."""

    job: Job
    job_path: Path
    shard: Shard | None
    saved: list[PlannedCall] | None = None

    def calls(self) -> Iterator[PlannedCall]:
        """Yield the planned calls lazily, or the saved plan's, exactly as saved."""
        if self.saved is not None:
            return iter(self.saved)
        return select_shard(iter_plan(self.job), self.shard)

    def count(self) -> int:
        if self.saved is not None:
            return len(self.saved)
        if self.shard is None:
            return self.job.planned_count
        return sum(1 for _ in self.calls())


def open_plan_source(path: Path, shard: Shard | None) -> PlanSource:
    """Load a job file or a saved plan (`.json`), and check the shard against it.

    Raises `ChirpJobsError` (exit 2) when the saved plan is stale or was made for
    another shard than `shard`.
    """
    if not is_saved_plan(path):
        return PlanSource(load_job(path), path, shard)
    saved = read_plan(path)
    if shard is not None and shard != saved.shard:
        raise ChirpJobsError(
            f"--shard {shard} does not match the saved plan {path}, which was made "
            f"for shard {saved.shard or 'none (the whole plan)'}; drop --shard, or "
            "make the plan with the shard"
        )
    return PlanSource(saved.job, saved.job_path, saved.shard, saved.calls)
