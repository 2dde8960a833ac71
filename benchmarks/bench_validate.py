"""Validate many small job files: `chirp-jobs validate` against `check-jsonschema`.

Both read the same files with the same schema in one invocation each. The ratio is
check-jsonschema's wall time over chirp-jobs' (target: at least 4).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import CHIRP_JOBS, median_time, ratio_line, run_timed, tool

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "job.schema.json"
TARGET = 4.0


def write_job_files(folder: Path, files: int, calls: int) -> list[Path]:
    """Write `files` YAML job files of `calls` entries each, all valid."""
    paths = []
    for file_index in range(files):
        lines = [
            "version: 1",
            f"name: bench-{file_index}",
            "description: A generated job for the validate benchmark.",
            "defaults:",
            '  from: "+15550100100"',
            "  metadata: {team: benchmarks}",
            "calls:",
        ]
        for call_index in range(calls):
            number = f"+1555{file_index:04d}{call_index:03d}"
            lines.append(f'  - to: "{number}"')
            if call_index % 3 == 0:
                lines.append(f'    metadata: {{ticket: "T-{call_index}"}}')
            if call_index % 5 == 0:
                lines.append("    repeat: {count: 2, interval: 90s}")
        path = folder / f"job-{file_index:04d}.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=10, help="call entries per file")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; median")
    args = parser.parse_args()

    check_jsonschema = tool("check-jsonschema")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        paths = [str(path) for path in write_job_files(folder, args.files, args.calls)]
        ours = [CHIRP_JOBS, "validate", str(folder)]
        theirs = [check_jsonschema, "--schemafile", str(SCHEMA), *paths]
        chirp_seconds = median_time(lambda: run_timed(ours)[0], args.repeats)
        check_seconds = median_time(lambda: run_timed(theirs)[0], args.repeats)

    ratio = check_seconds / chirp_seconds
    print(f"files: {args.files} of {args.calls} call entries")
    print(f"chirp-jobs validate: {chirp_seconds:.3f} s")
    print(f"check-jsonschema:    {check_seconds:.3f} s")
    print(
        ratio_line(
            "speed-up over check-jsonschema", ratio, f">= {TARGET}", ratio >= TARGET
        )
    )


if __name__ == "__main__":
    main()
