"""Field paths and file positions, shared by the YAML and TOML loaders."""

from __future__ import annotations

from dataclasses import dataclass

FieldPath = tuple[str | int, ...]
# Appended to a field path in a location map, it marks the position of the key
# rather than of the value. No key in a job file can contain a NUL character.
KEY_MARK = "\0key"


@dataclass(frozen=True)
class Location:
    """The 1-based start of a value in its file, and its text if a plain scalar."""

    line: int
    column: int
    text: str | None = None


def format_field(path: FieldPath) -> str:
    """Return a field path as users write it: `calls[0].to[1]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def nearest_location(locations: dict[FieldPath, Location], path: FieldPath) -> Location:
    """Return the location of the value at `path`, or of its nearest parent."""
    for end in range(len(path), -1, -1):
        found = locations.get(path[:end])
        if found is not None:
            return found
    return Location(1, 1)
