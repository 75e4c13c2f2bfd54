"""Error types. Every error a user can cause names the file, and where known the row and field."""

from __future__ import annotations


class ScrubberError(Exception):
    """Base class for errors the command line reports without a traceback."""


class InputFileError(ScrubberError):
    """A file cannot be read or parsed. Carries where the problem is so a user can find it."""

    def __init__(self, file: str, reason: str, *, row: int | None = None, field: str | None = None) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.reason = reason
        where = file
        if row is not None:
            where += f", row {row}"
        if field:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")


class ValidationFailed(ScrubberError):
    """A table failed its data-quality expectations and was not published."""

    def __init__(self, table: str, source: str, failures: list[dict]) -> None:
        self.table = table
        self.source = source
        self.failures = failures
        lines = [f"{source}: table {table!r} failed validation and was not published:"]
        for f in failures[:20]:
            lines.append(f"  - {f.get('expectation')}: {f.get('detail')}")
        if len(failures) > 20:
            lines.append(f"  ... and {len(failures) - 20} more")
        super().__init__("\n".join(lines))


class ReferenceNotFound(ScrubberError):
    """No loaded release covers a date of service."""


class RulesError(ScrubberError):
    """A rules/ YAML file is malformed. Names the file and key."""
