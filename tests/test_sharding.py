"""Sharding: shards of any plan are disjoint and together are the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from chirp_jobs.cli import main
from chirp_jobs.jobs import CallSpec, Job
from chirp_jobs.planning import iter_plan
from chirp_jobs.results import read_results
from chirp_jobs.sharding import Shard, parse_shard, select_shard

from .conftest import WriteJob

JOB = """
version: 1
name: sharded
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122", "+15550100123", "+15550100124"]
    repeat: 3
  - from: "+15550100101"
    to: "+15550100125"
"""

numbers = st.integers(min_value=0, max_value=9_999_999).map(lambda n: f"+1555{n:07d}")
call_specs = st.builds(
    lambda recipients, repeat, tag: (sorted(set(recipients)), repeat, tag),
    st.lists(numbers, min_size=1, max_size=6),
    st.integers(min_value=1, max_value=4),
    st.text("abcdefgh", max_size=3),
)


def _job(name: str, specs: list[tuple[list[str], int, str]]) -> Job:
    calls = [
        CallSpec(
            index=index,
            from_address="+15550100100",
            from_channel="pstn",
            to_channel="pstn",
            metadata={"tag": tag, "call": index},
            recipients=recipients,
            repeat_count=repeat,
            interval_seconds=0,
        )
        for index, (recipients, repeat, tag) in enumerate(specs)
    ]
    return Job("generated.yaml", name, "", calls, 10_000)


@settings(max_examples=60, deadline=None)
@given(
    name=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    specs=st.lists(call_specs, min_size=1, max_size=5),
    count=st.sampled_from([1, 2, 3, 5, 8, 16]),
)
def test_shards_partition_plan(
    name: str, specs: list[tuple[list[str], int, str]], count: int
) -> None:
    job = _job(name, specs)
    plan = [planned.key for planned in iter_plan(job)]
    shards = [
        [planned.key for planned in select_shard(iter_plan(job), Shard(index, count))]
        for index in range(count)
    ]
    union = [key for shard in shards for key in shard]
    assert sorted(union) == sorted(plan)
    for index, shard in enumerate(shards):
        for other in shards[index + 1 :]:
            assert not set(shard) & set(other)
    # Each shard keeps the plan's order, so repeats still go out in order.
    for shard in shards:
        assert shard == [key for key in plan if key in set(shard)]


def _plan_keys(cli: CliRunner, job: Path, *extra: str) -> list[str]:
    result = cli.invoke(main, ["plan", "--format", "json", str(job), *extra])
    assert result.exit_code == 0, result.output
    return [json.loads(line)["key"] for line in result.stdout.splitlines()]


@pytest.mark.parametrize("count", [2, 3, 7])
def test_plan_shards_cover_plan(
    cli: CliRunner, write_job: WriteJob, count: int
) -> None:
    job = write_job(JOB)
    whole = _plan_keys(cli, job)
    parts = [_plan_keys(cli, job, "--shard", f"{i}/{count}") for i in range(count)]
    assert sorted(key for part in parts for key in part) == sorted(whole)
    assert len({key for part in parts for key in part}) == len(whole) == 13


def test_plan_shard_auto_reads_completion_index(
    cli: CliRunner, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = write_job(JOB)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert _plan_keys(cli, job, "--shard", "auto/3") == _plan_keys(
        cli, job, "--shard", "1/3"
    )
    monkeypatch.setenv("CHIRP_SHARD", "auto/3")
    assert _plan_keys(cli, job) == _plan_keys(cli, job, "--shard", "1/3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", "error: invalid shard '3/3': the index must be from 0 to 2"),
        ("0/0", "error: invalid shard '0/0': the count must be from 1 to 10,000"),
        ("1-3", "error: invalid shard '1-3': use INDEX/COUNT such as 0/4"),
        ("auto/3", "error: --shard auto/N needs JOB_COMPLETION_INDEX set"),
    ],
)
def test_plan_bad_shard_exit_2(
    cli: CliRunner,
    write_job: WriteJob,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    message: str,
) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    result = cli.invoke(main, ["plan", str(write_job(JOB)), "--shard", text])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


def test_parse_shard_auto() -> None:
    assert parse_shard("auto/4", {"JOB_COMPLETION_INDEX": "3"}) == Shard(3, 4)


def test_run_shards_then_report_merges(
    cli: CliRunner, write_job: WriteJob, tmp_path: Path
) -> None:
    job = write_job(JOB.replace("repeat: 3", "repeat: 1"))
    template = str(tmp_path / "out" / "{job}-{shard}.jsonl")
    for index in range(3):
        result = cli.invoke(
            main,
            [
                "run",
                "--sandbox",
                "--rate",
                "100",
                "--shard",
                f"{index}/3",
                "--results",
                template,
                str(job),
            ],
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
    files = sorted((tmp_path / "out").glob("*.jsonl"))
    assert [path.name for path in files] == [
        f"sharded-shard-{index}-of-3.jsonl" for index in range(3)
    ]
    report = cli.invoke(main, ["report", "--format", "json", *map(str, files)])
    assert report.exit_code == 0, report.output
    summary = json.loads(report.stdout)
    assert summary["plannedCalls"] == 5
    assert summary["outcomes"] == {"created": 5, "failed": 0, "unknown": 0}


def test_run_shard_default_results_path(
    cli: CliRunner,
    write_job: WriteJob,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = write_job(JOB.replace("repeat: 3", "repeat: 1"))
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["run", "--sandbox", "--shard", "1/2", str(job)])
    assert result.exit_code == 0, result.output
    results = tmp_path / "chirp-results" / "sharded.sandbox.shard-1-of-2.jsonl"
    keys = [record["key"] for record in read_results(results)]
    assert keys == _plan_keys(cli, job, "--shard", "1/2")


def test_run_unsharded_in_indexed_job_exit_2(
    cli: CliRunner,
    write_job: WriteJob,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["run", "--sandbox", str(write_job(JOB))])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: JOB_COMPLETION_INDEX is set, as in a Kubernetes Indexed Job, but "
        "--shard is not"
    )
    assert not (tmp_path / "chirp-results").exists()
