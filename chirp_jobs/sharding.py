"""Split a plan by key into disjoint shards that several hosts can run at once."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from .errors import ChirpJobsError
from .planning import PlannedCall

# Kubernetes sets this variable in each pod of an Indexed Job, from 0 to
# completions - 1.
COMPLETION_INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
AUTO_INDEX = "auto"
MAX_SHARDS = 10_000
# ASCII digits only, and few of them: \d would also take "²" or Arabic-Indic digits.
_SHARD = re.compile(r"([0-9]{1,9}|auto)/([0-9]{1,9})")


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` (0-based) of a plan."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def contains(self, key: str) -> bool:
        return shard_index(key, self.count) == self.index


def shard_index(key: str, count: int) -> int:
    """Return the shard of `key` among `count`, the same on every host and version.

    A hash of the key, not its position, decides, so editing one call of a job
    moves only that call's planned calls between shards.
    """
    # NOTE: the whole key, repeat index included, is hashed, so the repeats of one
    # recipient can fall in different shards. A shard cannot see when another
    # sent the previous repeat, so across shards only the offsets space them.
    # Hashing the key without its repeat index would close that gap, but would
    # move keys between shards and make resumed shard runs place them again.
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str, environ: Mapping[str, str] = os.environ) -> Shard:
    """Parse `I/N`, or `auto/N` taking I from JOB_COMPLETION_INDEX.

    Raises `ChirpJobsError` (exit 2) on anything else.
    """
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise ChirpJobsError(
            f"invalid shard {text!r}: use INDEX/COUNT such as 0/4, or auto/COUNT to "
            f"take the index from {COMPLETION_INDEX_VARIABLE}"
        )
    index_text, count = match.group(1), int(match.group(2))
    if index_text == AUTO_INDEX:
        index_text = _completion_index(environ)
    index = int(index_text)
    if not 1 <= count <= MAX_SHARDS:
        raise ChirpJobsError(
            f"invalid shard {text!r}: the count must be from 1 to {MAX_SHARDS:,}"
        )
    if index >= count:
        raise ChirpJobsError(
            f"invalid shard {text!r}: the index must be from 0 to {count - 1}"
        )
    return Shard(index, count)


def check_unsharded(environ: Mapping[str, str] = os.environ) -> None:
    """Raise `ChirpJobsError` (exit 2) for an unsharded run inside an Indexed Job.

    Every pod of an Indexed Job would otherwise place every call of the plan.
    """
    if COMPLETION_INDEX_VARIABLE in environ:
        raise ChirpJobsError(
            f"{COMPLETION_INDEX_VARIABLE} is set, as in a Kubernetes Indexed Job, but "
            "--shard is not, so each pod would place every call; pass --shard auto/N "
            "with N the job's completions (auto/1 for a single pod)"
        )


def _completion_index(environ: Mapping[str, str]) -> str:
    value = environ.get(COMPLETION_INDEX_VARIABLE, "")
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise ChirpJobsError(
            f"--shard auto/N needs {COMPLETION_INDEX_VARIABLE} set to a whole number "
            f"(a Kubernetes Indexed Job sets it); it is {value!r}"
        )
    return value


def select_shard(
    plan: Iterable[PlannedCall], shard: Shard | None
) -> Iterator[PlannedCall]:
    """Yield the planned calls of `shard`, or all of them when `shard` is None."""
    for planned in plan:
        if shard is None or shard.contains(planned.key):
            yield planned


def shard_results_template(template: str, shard: Shard | None) -> str:
    """Replace `{shard}` in a results path, or add `.shard-I-of-N` before its suffix.

    Each shard gets its own results file, so shards on one host do not wait for
    each other's lock and `report` can merge the files afterwards.
    """
    if shard is None:
        return template.replace("{shard}", "all")
    label = f"shard-{shard.index}-of-{shard.count}"
    if "{shard}" in template:
        return template.replace("{shard}", label)
    head, dot, suffix = template.rpartition(".")
    if not dot or "/" in suffix:
        return f"{template}.{label}"
    return f"{head}.{label}.{suffix}"
