"""Exceptions raised by chirp-jobs, each carrying the exit code the CLI uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Exit codes, documented in the README. Only the CLI exits; the core raises.
EXIT_OK = 0
EXIT_CALLS_NOT_CREATED = 1
EXIT_INVALID = 2
EXIT_LOCKED = 3
EXIT_CONFIG = 4

# A file with hundreds of problems is usually one mistake repeated (a whole list of
# unquoted numbers, say). The first ones show what to fix, and checking stops there,
# so a file with a problem in each of 600,000 values fails in seconds.
MAX_PROBLEMS_PER_FILE = 50


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a job file, located as precisely as the parser allows.

    `line` and `column` are 1-based; 0 means the position is not known. `field` is the
    field path in the form users write it, such as `calls[0].to[1]`, or "" for the
    file as a whole.
    """

    path: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        # A problem with the file as a whole (not found, too large) has no position.
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class ChirpJobsError(Exception):
    """Base class of every error that chirp-jobs reports to its user."""

    exit_code = EXIT_INVALID


class JobFileError(ChirpJobsError):
    """One or more job files are invalid; nothing was sent.

    `more` is true when checking stopped at `MAX_PROBLEMS_PER_FILE` problems because
    at least one more was found. The message then ends with `stopped_line`.
    """

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem], more: bool = False) -> None:
        self.problems = sorted(problems)
        self.more = more
        lines = [str(problem) for problem in self.problems]
        if more and self.problems:
            lines.append(stopped_line(self.problems[0].path))
        super().__init__("\n".join(lines))


def stopped_line(path: str) -> str:
    """Return the line that ends the problems of a file whose checking stopped."""
    return (
        f"{path}: stopped after {MAX_PROBLEMS_PER_FILE} problems, and the file has "
        "more; fix these and validate again"
    )


class ProblemCollector:
    """Distinct problems of one file, at most `MAX_PROBLEMS_PER_FILE` of them.

    `extend` stops iterating its source at the first distinct problem past the
    limit and sets `more`, so a lazy source does no further work.
    """

    def __init__(self) -> None:
        self.more = False
        self._found: dict[Problem, None] = {}

    def __len__(self) -> int:
        return len(self._found)

    @property
    def problems(self) -> list[Problem]:
        return list(self._found)

    def extend(self, problems: Iterable[Problem]) -> None:
        if self.more:
            return
        for problem in problems:
            if problem in self._found:
                continue
            if len(self._found) >= MAX_PROBLEMS_PER_FILE:
                self.more = True
                return
            self._found[problem] = None

    def error(self) -> JobFileError:
        return JobFileError(self.problems, more=self.more)


class ConfigError(ChirpJobsError):
    """The run is misconfigured (a missing API key, say); nothing was sent."""

    exit_code = EXIT_CONFIG


class ResultsLockedError(ChirpJobsError):
    """Another process has locked the results file, so nothing was sent."""

    exit_code = EXIT_LOCKED


class PlanChangedError(ChirpJobsError):
    """A resumed run's plan no longer matches what the run recorded."""

    exit_code = EXIT_INVALID


class TargetChangedError(ChirpJobsError):
    """A resumed live run points at another API than the one it placed calls on."""

    exit_code = EXIT_INVALID


class ResultsWriteError(ChirpJobsError):
    """The results file stopped taking records during a run."""

    exit_code = EXIT_CALLS_NOT_CREATED
