"""Validate one job file with a problem in every recipient, against a valid twin.

The invalid file lists its recipients as unquoted numbers (`to: [15550100100, ...]`),
each a problem because addresses must be strings. Its twin has the same recipients
quoted, and is valid. Both are written in YAML and in TOML. The figures are the
invalid file's wall time and peak RSS over the valid file's (target: at most 1,
because checking stops at the 51st problem).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import CHIRP_JOBS, median_time, ratio_line, run_timed

TARGET = 1.0
FORMATS = ("yaml", "toml")


def write_numbers_job(path: Path, recipients: int, quoted: bool) -> Path:
    """Write a job with one call to `recipients` numbers, quoted or not."""
    if quoted:
        numbers = ", ".join(f'"+1555{i:07d}"' for i in range(recipients))
    else:
        numbers = ", ".join(f"1555{i:07d}" for i in range(recipients))
    if path.suffix == ".toml":
        text = (
            "version = 1\n"
            'name = "many-errors"\n'
            f"maxPlannedCalls = {max(recipients, 1)}\n"
            "\n[defaults]\n"
            'from = "+15550100100"\n'
            "\n[[calls]]\n"
            f"to = [{numbers}]\n"
        )
    else:
        text = (
            "version: 1\n"
            "name: many-errors\n"
            f"maxPlannedCalls: {max(recipients, 1)}\n"
            "defaults:\n"
            '  from: "+15550100100"\n'
            "calls:\n"
            f"  - to: [{numbers}]\n"
        )
    path.write_text(text, encoding="utf-8")
    return path


def measure(path: Path, expected_exit: int, repeats: int) -> tuple[float, int]:
    """Return the median wall time in seconds and the max peak RSS in KiB."""
    peaks = []

    def run_once() -> float:
        seconds, peak, exit_code = run_timed(
            [CHIRP_JOBS, "validate", str(path)], check=False
        )
        if exit_code != expected_exit:
            raise SystemExit(
                f"error: validate {path.name} exited {exit_code}, "
                f"expected {expected_exit}"
            )
        peaks.append(peak)
        return seconds

    seconds = median_time(run_once, repeats)
    return seconds, max(peaks)


def compare(folder: Path, suffix: str, recipients: int, repeats: int) -> None:
    invalid = write_numbers_job(folder / f"invalid.{suffix}", recipients, False)
    valid = write_numbers_job(folder / f"valid.{suffix}", recipients, True)
    invalid_seconds, invalid_peak = measure(invalid, 2, repeats)
    valid_seconds, valid_peak = measure(valid, 0, repeats)
    print(
        f"{suffix}: invalid {invalid_seconds:.2f} s, {invalid_peak / 1024:.0f} MiB; "
        f"valid {valid_seconds:.2f} s, {valid_peak / 1024:.0f} MiB"
    )
    time_ratio = invalid_seconds / valid_seconds
    memory_ratio = invalid_peak / valid_peak
    print(
        ratio_line(
            f"  {suffix} time over the valid file",
            time_ratio,
            f"<= {TARGET}",
            time_ratio <= TARGET,
        )
    )
    print(
        ratio_line(
            f"  {suffix} peak RSS over the valid file",
            memory_ratio,
            f"<= {TARGET}",
            memory_ratio <= TARGET,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--recipients", type=int, default=600_000, help="numbers in each file"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; median")
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help="comma-separated: yaml,toml"
    )
    parser.add_argument(
        "--write-only",
        type=Path,
        metavar="FOLDER",
        help="write the files into FOLDER and exit, so they can be timed by hand",
    )
    args = parser.parse_args()

    suffixes = [suffix for suffix in args.formats.split(",") if suffix]
    if args.write_only is not None:
        for suffix in suffixes:
            write_numbers_job(
                args.write_only / f"invalid.{suffix}", args.recipients, False
            )
            write_numbers_job(
                args.write_only / f"valid.{suffix}", args.recipients, True
            )
        return
    print(f"recipients: {args.recipients:,} per file")
    with tempfile.TemporaryDirectory() as temporary:
        for suffix in suffixes:
            compare(Path(temporary), suffix, args.recipients, args.repeats)


if __name__ == "__main__":
    main()
