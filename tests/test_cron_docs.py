"""The scheduler examples in docs/cron.md, the pre-commit hook and completion.

Each example is run as written, with three changes: its folders point into
tmp_path, `--sandbox` is added after `run` so no real call is placed, and the
job file is a small one so the test is quick.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from chirp_jobs.results import read_results

from .conftest import REPOSITORY, SCRIPT

PREFIX = "/srv/chirp-jobs"
BARE_PATH = "PATH=/usr/bin:/bin"
FAKE_KEY = "sk_test_app_fake123"
JOB_PATH = "jobs/appointment-reminders.yaml"
SMALL_JOB = """\
version: 1
name: appointment-reminders
calls:
  - from: "+15550100100"
    to: ["+15550100131", "+15550100132", "+15550100133", "+15550100134"]
"""
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(,\d+(-\d+)?)*(/\d+)?$")


def _blocks(language: str) -> list[str]:
    text = (REPOSITORY / "docs" / "cron.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


@pytest.fixture
def install(tmp_path: Path) -> Path:
    """A stand-in for /srv/chirp-jobs: the job file and the env files."""
    root = tmp_path / "srv"
    (root / "jobs").mkdir(parents=True)
    (root / JOB_PATH).write_text(SMALL_JOB, encoding="utf-8")
    (root / "chirp.env").write_text(f"export CHIRP_API_KEY={FAKE_KEY}\n")
    (root / "env").write_text(f"CHIRP_API_KEY={FAKE_KEY}\n")
    (tmp_path / "home").mkdir()
    return root


def _localize(text: str, root: Path) -> str:
    text = text.replace(f"{PREFIX}/.venv/bin/chirp-jobs", str(SCRIPT))
    return text.replace(PREFIX, str(root))


def _with_sandbox(args: list[str]) -> list[str]:
    position = args.index("run") + 1
    return [*args[:position], "--sandbox", *args[position:]]


def _today() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d")


def test_crontab_line_runs_silently(install: Path) -> None:
    (block,) = _blocks("crontab")
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(maxsplit=5)
    assert all(CRON_FIELD.match(field) for field in fields[:5]), fields[:5]
    command = _localize(fields[5], install).replace(" run ", " run --sandbox ", 1)
    completed = subprocess.run(
        ["/usr/bin/env", "-i", BARE_PATH, "/bin/sh", "-c", command],
        cwd=install.parent / "home",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr == ""
    results = install / "chirp-results" / f"appointment-reminders-{_today()}.jsonl"
    assert len(read_results(results)) == 4


def _ini(block: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(block)
    return parser


def test_systemd_service_and_timer(install: Path) -> None:
    service, timer = (_ini(block) for block in _blocks("ini"))
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["EnvironmentFile"] == "/etc/chirp-jobs/env"
    assert re.fullmatch(r"Mon\.\.Fri \d\d:\d\d", timer["Timer"]["OnCalendar"])
    assert timer["Install"]["WantedBy"] == "timers.target"
    args = _with_sandbox(
        shlex.split(_localize(service["Service"]["ExecStart"], install))
    )
    environment = {"PATH": "/usr/bin:/bin"}
    for line in (install / "env").read_text().splitlines():
        name, _, value = line.partition("=")
        environment[name] = value
    completed = subprocess.run(
        args,
        cwd=_localize(service["Service"]["WorkingDirectory"], install),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    results = install / "chirp-results" / f"appointment-reminders-{_today()}.jsonl"
    assert len(read_results(results)) == 4


def _manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for block in _blocks("yaml"):
        for document in yaml.safe_load_all(block):
            if isinstance(document, dict) and "apiVersion" in document:
                found[document["kind"]] = document
    return found


def _container_run(
    pod: dict[str, Any], install: Path, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    (variable,) = container["env"]
    assert variable["name"] == "CHIRP_API_KEY"
    assert variable["valueFrom"]["secretKeyRef"]["key"] == "key"
    results = install.parent / "results"
    args = [
        argument.replace("/results", str(results))
        for argument in _with_sandbox(container["command"] + container["args"])
    ]
    args[0] = str(SCRIPT)
    return subprocess.run(
        args,
        cwd=_localize(container["workingDir"], install),
        env={"PATH": "/usr/bin:/bin", "CHIRP_API_KEY": FAKE_KEY, **extra_env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kubernetes_cronjob(install: Path) -> None:
    cronjob = _manifests()["CronJob"]
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    assert all(CRON_FIELD.match(field) for field in spec["schedule"].split())
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    completed = _container_run(pod, install, {})
    assert completed.returncode == 0, completed.stderr
    results = install.parent / "results" / f"appointment-reminders-{_today()}.jsonl"
    assert len(read_results(results)) == 4


def test_kubernetes_indexed_job_shards(install: Path) -> None:
    job = _manifests()["Job"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    count = spec["completions"]
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--shard") + 1] == f"auto/{count}"
    for index in range(count):
        completed = _container_run(
            spec["template"]["spec"], install, {"JOB_COMPLETION_INDEX": str(index)}
        )
        assert completed.returncode == 0, completed.stderr
    files = sorted((install.parent / "results").glob("*-shard-*.jsonl"))
    assert len(files) == count
    report = subprocess.run(
        [str(SCRIPT), "report", "--format", "json", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(report.stdout)
    assert summary["plannedCalls"] == 4
    assert summary["outcomes"]["created"] == 4


def test_pre_commit_hook_validates(tmp_path: Path) -> None:
    (hook,) = yaml.safe_load((REPOSITORY / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "chirp-jobs-validate"
    assert hook["language"] == "python"
    files = re.compile(hook["files"])
    assert files.search("jobs/a.yaml")
    assert files.search("jobs/team/b.toml")
    assert not files.search(".github/workflows/ci.yml")
    entry = shlex.split(hook["entry"])
    assert entry == ["chirp-jobs", "validate"]
    good = subprocess.run(
        [str(SCRIPT), *entry[1:], str(REPOSITORY / JOB_PATH)],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL_JOB.replace("version: 1", "version: 2"))
    failed = subprocess.run(
        [str(SCRIPT), *entry[1:], str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert f"{bad}:1:" in failed.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_script(shell: str) -> None:
    documented = "\n".join(_blocks("sh"))
    assert f"_CHIRP_JOBS_COMPLETE={shell}_source chirp-jobs" in documented
    completed = subprocess.run(
        [str(SCRIPT)],
        env={**os.environ, "_CHIRP_JOBS_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0
    assert "_CHIRP_JOBS_COMPLETE" in completed.stdout


def test_shell_completion_completes_commands() -> None:
    environment = {
        **os.environ,
        "_CHIRP_JOBS_COMPLETE": "bash_complete",
        "COMP_WORDS": "chirp-jobs re",
        "COMP_CWORD": "1",
    }
    completed = subprocess.run(
        [str(SCRIPT)], env=environment, capture_output=True, text=True
    )
    assert completed.stdout.split() == ["plain,report"]
