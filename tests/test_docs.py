"""The examples in the docs validate and expand as the docs state."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from chirp_jobs.planning import iter_plan
from chirp_jobs.validation import load_job

from .conftest import REPOSITORY, SCRIPT

BLOCK = re.compile(r"```(yaml|toml)\n(.*?)```", re.DOTALL)


def _examples(document: str) -> dict[str, str]:
    text = (REPOSITORY / "docs" / document).read_text()
    return {
        language: body for language, body in BLOCK.findall(text) if "version" in body
    }


def test_job_file_examples_agree(tmp_path: Path) -> None:
    examples = _examples("job-files.md")
    plans = {}
    for language, body in examples.items():
        path = tmp_path / f"example.{language}"
        path.write_text(body)
        plans[language] = [(p.key, p.request) for p in iter_plan(load_job(path))]
    assert set(plans) == {"yaml", "toml"}
    assert plans["yaml"] == plans["toml"]
    assert len(plans["yaml"]) == 5


def test_readme_exit_codes_complete() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    for code in range(5):
        assert re.search(rf"^\| {code} \|", readme, re.MULTILINE), code


def test_readme_quick_start_prints_when_captured(tmp_path: Path) -> None:
    readme = (REPOSITORY / "README.md").read_text()
    command = re.search(r"\.venv/bin/chirp-jobs (run [^\n]*)", readme)
    assert command is not None
    args = shlex.split(command.group(1))
    assert args[-1] == "jobs/appointment-reminders.yaml"
    # A job without the example's 5 s repeat interval keeps the test quick.
    job = tmp_path / "quick.yaml"
    job.write_text(
        'version: 1\nname: quick\ncalls:\n  - from: "+15550100100"\n'
        '    to: "+15550100121"\n'
    )
    completed = subprocess.run(
        [str(SCRIPT), *args[:-1], "--results", str(tmp_path / "r.jsonl"), str(job)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("key ")
    assert lines[-1].startswith("1 created, 0 failed, 0 unknown of 1 planned call;")
