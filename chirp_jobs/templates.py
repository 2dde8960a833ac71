"""Placeholders in user-given names: results paths and run ids."""

from __future__ import annotations

import re
from datetime import datetime

from .errors import ConfigError

_PLACEHOLDER = re.compile(r"\{([a-z]*)\}")


def expand_template(
    template: str, now: datetime, job: str, run_id: str | None = None
) -> str:
    """Replace `{job}`, `{date}` (YYYY-MM-DD), `{time}` (HHMMSS) and `{run}`.

    `now` should be in the time zone the user thinks in (local time for cron), since
    `{date}` decides which calls count as the same day's run. `{run}` is not
    available while the run id itself is being expanded.
    """
    values = {
        "job": job,
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%H%M%S"),
    }
    if run_id is not None:
        values["run"] = run_id

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join("{" + key + "}" for key in values)
            raise ConfigError(
                f"unknown placeholder {{{name}}} in {template!r}; use {known}"
            )
        return values[name]

    return _PLACEHOLDER.sub(replace, template)
