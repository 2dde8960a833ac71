from __future__ import annotations

from pathlib import Path

import pytest

from chirp_jobs.errors import JobFileError
from chirp_jobs.loading import format_field, load_document

from .conftest import WriteJob


def test_yaml_words_stay_as_written(write_job: WriteJob) -> None:
    path = write_job(
        """
        a: yes
        b: 0123
        c: 1:20
        d: 2026-12-05
        e: 1_000
        f: 0x1F
        """
    )
    data = load_document(path).data
    assert data == {
        "a": "yes",
        "b": "0123",
        "c": "1:20",
        "d": "2026-12-05",
        "e": "1_000",
        "f": "0x1F",
    }


def test_yaml_core_scalars_are_typed(write_job: WriteJob) -> None:
    path = write_job("a: true\nb: 12\nc: 1.5\nd: null\ne: ~\nf: -3\n")
    data = load_document(path).data
    assert data == {"a": True, "b": 12, "c": 1.5, "d": None, "e": None, "f": -3}


def test_yaml_quoted_scalars_are_strings(write_job: WriteJob) -> None:
    path = write_job("a: 'true'\nb: \"12\"\n")
    assert load_document(path).data == {"a": "true", "b": "12"}


def test_yaml_byte_order_mark_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: x\n")
    assert load_document(path).data == {"name": "x"}


def test_toml_byte_order_mark_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbfname = "x"\n')
    assert load_document(path).data == {"name": "x"}


def test_yaml_locate_values_and_keys(write_job: WriteJob) -> None:
    document = load_document(write_job('calls:\n  - to:\n      - "+1"\n      - "+2"\n'))
    where = document.locate(("calls", 0, "to", 1))
    assert (where.line, where.column) == (4, 9)
    key = document.locate_key(("calls", 0, "to"))
    assert (key.line, key.column) == (2, 5)


def test_toml_locate_array_items(write_job: WriteJob) -> None:
    document = load_document(
        write_job(
            '[[calls]]\nto = "+1"\n\n[[calls]]\nto = ["+2",\n  "+3"]\n',
            "job.toml",
        )
    )
    first = document.locate(("calls", 0, "to"))
    assert first.line == 2
    item = document.locate(("calls", 1, "to", 1))
    assert (item.line, item.column) == (6, 3)


def test_yaml_python_tag_rejected(write_job: WriteJob) -> None:
    path = write_job("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert "unsupported tag" in str(raised.value)


def test_yaml_parse_error_has_position(write_job: WriteJob) -> None:
    path = write_job("calls:\n  - to: [\n")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    problem = raised.value.problems[0]
    assert problem.line == 3
    assert problem.message.startswith("invalid YAML")


def test_missing_file_is_problem(tmp_path: Path) -> None:
    with pytest.raises(JobFileError) as raised:
        load_document(tmp_path / "absent.yaml")
    assert raised.value.problems[0].message == "file not found"


def test_unsupported_suffix_rejected(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("{}")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert "job files end in .yaml, .yml or .toml" in str(raised.value)


def test_format_field_paths() -> None:
    assert format_field(("calls", 0, "to", 1)) == "calls[0].to[1]"
    assert format_field(("name",)) == "name"
    assert format_field(()) == ""


TOML_POSITIONS = '''\
name = "positions"  # a comment with [brackets] and key = value
text = """
not = "a key"
[not.a.table]
"""

[defaults]
"quoted key" = 1
dotted.inner = 2
metadata = { seat = "2B", tags = ["a", { deep = 7 }] }

[[calls]]
to = [
  "+15550100123",  # first
  { address = +15550100124 },
]

[calls.repeat]
count = 3

[[calls]]
to = "+15550100125"
'''


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("name",), (1, 8, None)),
        (("defaults", "quoted key"), (8, 16, "1")),
        (("defaults", "dotted", "inner"), (9, 16, "2")),
        (("defaults", "metadata", "seat"), (10, 21, None)),
        (("defaults", "metadata", "tags", 1, "deep"), (10, 49, "7")),
        (("calls",), (12, 1, None)),
        (("calls", 0, "to", 0), (14, 3, None)),
        (("calls", 0, "to", 1, "address"), (15, 15, "+15550100124")),
        (("calls", 0, "repeat", "count"), (19, 9, "3")),
        (("calls", 1, "to"), (22, 6, None)),
    ],
)
def test_toml_locate_values(
    write_job: WriteJob, path: tuple[str | int, ...], expected: tuple[int, int, str]
) -> None:
    document = load_document(write_job(TOML_POSITIONS, "job.toml"))
    where = document.locate(path)
    assert (where.line, where.column, where.text) == expected


def test_toml_multiline_string_not_scanned(write_job: WriteJob) -> None:
    document = load_document(write_job(TOML_POSITIONS, "job.toml"))
    assert document.locate(("not",)) == document.locate(())
    assert document.locate_key(("defaults", "metadata")).line == 10


def test_toml_duplicate_key_both_lines(write_job: WriteJob) -> None:
    path = write_job("[a]\nb = 1\nc = 2\n[a]\nd = 3\n[x]\ny = 1\n y = 2\n", "job.toml")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert [str(problem) for problem in raised.value.problems] == [
        f"{path}:4:1: a: duplicate table `[a]` at line 4; first defined at line 1"
    ]


def test_toml_duplicate_dotted_key(write_job: WriteJob) -> None:
    path = write_job("a.b = 1\nc = 2\na.b = 3\n", "job.toml")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert [str(problem) for problem in raised.value.problems] == [
        f"{path}:3:1: a.b: duplicate key `b` at line 3; first defined at line 1"
    ]


def test_yaml_duplicate_in_flow_mapping(write_job: WriteJob) -> None:
    path = write_job("a: {x: 1, y: 2, x: 3}\n")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert [str(problem) for problem in raised.value.problems] == [
        f"{path}:1:17: a.x: duplicate key `x` at line 1; first defined at line 1"
    ]


def test_yaml_unknown_alias_rejected(write_job: WriteJob) -> None:
    path = write_job("a: *missing\n")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert raised.value.problems[0].message == (
        "alias *missing has no anchor before it"
    )


def test_yaml_second_document_rejected(write_job: WriteJob) -> None:
    path = write_job("a: 1\n---\na: 2\n")
    with pytest.raises(JobFileError) as raised:
        load_document(path)
    assert raised.value.problems[0].message == (
        "a job file holds one YAML document; remove ---"
    )
