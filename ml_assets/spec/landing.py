"""Where and how the files land, and the days they are partitioned into."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ml_assets.spec.base import _Strict


class LandingLimits(_Strict):
    """What a landing file may be before it is set aside unread: files come from outside, and
    one huge or odd file must not stop the others or exhaust memory. A file past a limit is
    quarantined with the limit named; a line past `max_line_bytes` is set aside as a bad row."""

    # the header line: a longer one (a 600 MB file with no newline) is no header
    max_header_bytes: int = Field(65_536, ge=256, le=1 << 20)
    # columns in the header (an annotation batch with 100k columns is not a batch)
    max_columns: int = Field(1_000, ge=1, le=100_000)
    # one line; longer lines are rejected rows with their line number
    max_line_bytes: int = Field(2 << 20, ge=1024, le=64 << 20)
    # the whole file; split bigger exports into several files of the day
    max_file_bytes: int = Field(4 << 30, ge=1024)


class LandingFiles(_Strict):
    """Where the daily files of a table land, relative to the data folder."""

    path: str
    # which files land here; with `partition_by: file_name`, `{date}` is the day as YYYY-MM-DD
    pattern: str
    # how a file's day is known: `file_name` (the `{date}` in its name; one day per file) or
    # `event_time` (the days of its rows' time column; a file may span several days)
    partition_by: Literal["file_name", "event_time"] = "file_name"
    format: Literal["csv"] = "csv"
    delimiter: str = ","
    encoding: Literal["utf-8"] = "utf-8"
    # a file with more bad rows than this share fails instead of quarantining the rows
    max_rejected_fraction: float = Field(0.05, ge=0, le=1)
    # a day without any file is an error (a silent gap otherwise)
    required: bool = True
    # columns in the file that the spec does not name: an error (default), or read past
    ignore_extra_columns: bool = False
    # the file sensor takes a file once its size and change time held still this long
    # (a writer still copying changes both); writers that rename a finished file into the
    # folder can lower it
    settle_seconds: float = Field(30.0, ge=0, le=86_400)
    # sizes past which a file is set aside unread (untrusted input: README, "Untrusted input")
    limits: LandingLimits = Field(default_factory=LandingLimits)

    @model_validator(mode="after")
    def _date_in_pattern(self) -> LandingFiles:
        dates = self.pattern.count("{date}")
        if self.partition_by == "file_name" and dates != 1:
            raise ValueError(
                f"pattern {self.pattern!r} must contain '{{date}}' once (the day, YYYY-MM-DD), "
                "or set partition_by: event_time to take the days from the rows"
            )
        if self.partition_by == "event_time" and dates:
            raise ValueError(
                f"pattern {self.pattern!r}: with partition_by: event_time the days come from the rows; "
                "use '*' where the date was"
            )
        return self


class Partitions(_Strict):
    start: date
    # exclusive; leave unset for data that keeps arriving
    end: date | None = None
    # the days are days in this timezone (IANA name); landing times without an offset are read as
    # times in it, and times with one are converted to it
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {name!r} is not an IANA timezone name (e.g. UTC, Europe/Berlin)"
            ) from None
        return name

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end is not None and self.end <= self.start:
            raise ValueError(
                f"partitions.end ({self.end}) must be after partitions.start ({self.start})"
            )
        return self
