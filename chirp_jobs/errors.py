"""Exceptions raised by chirp-jobs, each carrying the exit code the CLI uses."""

from __future__ import annotations

from dataclasses import dataclass

# Exit codes, documented in the README. Only the CLI exits; the core raises.
EXIT_OK = 0
EXIT_CALLS_NOT_CREATED = 1
EXIT_INVALID = 2
EXIT_LOCKED = 3
EXIT_CONFIG = 4


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
    """One or more job files are invalid; nothing was sent."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class ConfigError(ChirpJobsError):
    """The run is misconfigured (a missing API key, say); nothing was sent."""

    exit_code = EXIT_CONFIG


class ResultsLockedError(ChirpJobsError):
    """Another process has locked the results file, so nothing was sent."""

    exit_code = EXIT_LOCKED


class PlanChangedError(ChirpJobsError):
    """A resumed run's plan no longer matches what the run recorded."""

    exit_code = EXIT_INVALID


class ResultsWriteError(ChirpJobsError):
    """The results file stopped taking records during a run."""

    exit_code = EXIT_CALLS_NOT_CREATED
