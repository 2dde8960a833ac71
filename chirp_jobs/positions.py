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


class AllLocated(Exception):
    """Every requested path of a `RequestedLocations` has been recorded."""


class RequestedLocations(dict[FieldPath, Location]):
    """A location map that records only some paths, for scanners that stop early.

    `setdefault`, which the scanners record through, keeps a location only for a
    requested path or one of its parents, which `nearest_location` falls back to.
    It raises `AllLocated` once every requested path is recorded, so a scanner
    can stop there instead of reading the rest of a large file.
    """

    def __init__(self, requested: frozenset[FieldPath]) -> None:
        super().__init__()
        self._keys_to_keep = {
            path[:end] for path in requested for end in range(len(path) + 1)
        }
        self._missing = set(requested)

    def setdefault(self, key: FieldPath, default: Location) -> Location:
        if key in self or key not in self._keys_to_keep:
            return self.get(key, default)
        self[key] = default
        self._missing.discard(key)
        if not self._missing:
            raise AllLocated
        return default
