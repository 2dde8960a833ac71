from __future__ import annotations

from datetime import datetime

import pytest

from chirp_jobs.errors import ConfigError
from chirp_jobs.templates import expand_template

NOW = datetime(2026, 12, 4, 9, 5, 7)


def test_expands_every_placeholder() -> None:
    text = expand_template(
        "out/{job}-{date}-{time}-{run}.jsonl", NOW, "reminders", "r1"
    )
    assert text == "out/reminders-2026-12-04-090507-r1.jsonl"


def test_text_without_placeholders_unchanged() -> None:
    assert expand_template("results.jsonl", NOW, "x") == "results.jsonl"


def test_unknown_placeholder_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        expand_template("{jobs}.jsonl", NOW, "x")
    assert "unknown placeholder {jobs}" in str(raised.value)


def test_run_unavailable_without_run_id() -> None:
    with pytest.raises(ConfigError) as raised:
        expand_template("daily-{run}", NOW, "x")
    assert "{run}" in str(raised.value)
