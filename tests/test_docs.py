"""The examples in the docs validate and expand as the docs state."""

from __future__ import annotations

import re
from pathlib import Path

from chirp_jobs.planning import iter_plan
from chirp_jobs.validation import load_job

from .conftest import REPOSITORY

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
