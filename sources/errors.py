"""The one exception family of Tongyuan.

Every message names where the problem is (file, row, column), the value that was wrong and what
would be right, so that inventory staff can fix the input without reading code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: longest message an error carries (a YAML alias bomb or a huge cell must not give megabytes)
MAX_MESSAGE = 4000
#: longest rendering of one offending value in a message
MAX_VALUE = 200


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else (
        text[:limit - 40] + f" ... [{len(text) - limit + 40} more characters]")


class TongyuanError(Exception):
    """Base class of every error Tongyuan raises on purpose; its message is capped at
    :data:`MAX_MESSAGE` characters."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(_cap(a, MAX_MESSAGE) if isinstance(a, str) else a for a in args))


def located(path: str | Path | None, problem: str, *, row: int | None = None,
            column: str | None = None, value: Any = None, expected: str | None = None,
            source_id: str | None = None, sheet: str | None = None) -> str:
    """``"<file>, sheet <s>, row <n>, source_id <id>, column <c>: <problem>; got <v>; expected
    <e>"``, leaving out what is not given: the one way Tongyuan writes where a problem is.

    In a workbook (``sheet`` given) ``row`` is the Excel row number and ``column`` may lead with
    its letter (``"C 'fuel'"``, see :meth:`InputError.in_sheet`)."""
    where = [str(path) if path is not None else "<input>"]
    if sheet is not None:
        where.append(f"sheet {sheet!r}")
    if row is not None:
        where.append(f"row {row}")
    if source_id is not None:
        where.append(f"source_id {source_id!r}")
    if column is not None:
        lettered = sheet is not None and re.match(r"[A-Z]{1,3} '", str(column))
        where.append(f"column {column}" if lettered else f"column {column!r}")
    msg = ", ".join(where) + f": {problem}"
    if value is not None or (row is not None and column is not None):
        msg += f"; got {_cap(repr(value), MAX_VALUE)}"
    if expected:
        msg += f"; expected {expected}"
    return msg


class InputError(TongyuanError):
    """A problem in one input file, located as precisely as possible.

    Parameters
    ----------
    path : file the problem is in
    problem : what is wrong, one sentence
    row : 1-based data row (header excluded) or feature number, if the problem is in one row
    column : column name, if the problem is in one column
    value : the offending value
    expected : what would have been accepted
    """

    def __init__(
        self,
        path: str | Path | None,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
        expected: str | None = None,
        source_id: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.row = row
        self.column = column
        self.value = value
        self.expected = expected
        self.source_id = source_id
        super().__init__(located(path, problem, row=row, column=column, value=value,
                                 expected=expected, source_id=source_id))

    #: the workbook sheet the problem is in (see :meth:`in_sheet`)
    sheet: str | None = None

    def in_sheet(self, sheet: str, column: str | None) -> InputError:
        """The same error located in a workbook: ``sheet`` named and ``column`` given with its
        letter (``"C 'fuel'"``); ``row`` is already the Excel row number."""
        new = type(self)(self.path, self.problem, row=self.row, column=column or self.column,
                         value=self.value, expected=self.expected, source_id=self.source_id)
        new.sheet = sheet
        new.args = (_cap(located(self.path, self.problem, **new.where()), MAX_MESSAGE),)
        return new

    def where(self) -> dict[str, Any]:
        """The location and values of the problem as keywords of this class (to re-raise it
        elsewhere, or write it as a row of ``errors.csv``)."""
        return {"row": self.row, "column": self.column, "value": self.value,
                "expected": self.expected, "source_id": self.source_id, "sheet": self.sheet}


class MissingColumnError(InputError):
    """A required column is absent."""


class UnitError(InputError):
    """A unit string pint cannot parse, or one of the wrong dimension."""


class ActivityError(InputError):
    """Activity is missing, not a number or negative."""


class GeometryError(InputError):
    """Geometry is missing, empty, invalid or of the wrong type."""


class UnknownKeyError(InputError):
    """Sector, fuel, technology, control, proxy or species not in the configured tables."""


class DuplicateSourceError(InputError):
    """The same source_id appears twice."""


class CRSMissingError(InputError):
    """An input has no coordinate reference system and the config does not give one."""


class CRSMismatchError(TongyuanError):
    """Geometries and grid are in different CRSs where they must agree."""


class ConfigError(TongyuanError):
    """The build configuration or a configuration table is invalid."""

    #: where the problem is, when made by :meth:`at` (as the attributes of :class:`InputError`)
    path: str | None = None
    problem: str | None = None
    row: int | None = None
    column: str | None = None
    value: Any = None
    expected: str | None = None
    sheet: str | None = None

    @classmethod
    def at(cls, path: str | Path, problem: str, **where: Any) -> ConfigError:
        """An error in one row or column of a configuration table, located like
        :class:`InputError` (keywords ``row``, ``column``, ``value``, ``expected``)."""
        exc = cls(located(path, problem, **where))
        exc.path, exc.problem = str(path), problem
        for key in ("row", "column", "value", "expected"):
            setattr(exc, key, where.get(key))
        return exc


#: most problems the message of a :class:`ConfigErrors` lists (``tongyuan check`` lists all)
MAX_LISTED = 10
#: longest line of one listed problem
MAX_LINE = 300


class ConfigErrors(ConfigError):
    """Several problems found at once (every bad row of a table, every broken table): the
    message lists the first :data:`MAX_LISTED` and counts the rest; ``errors`` holds them all,
    each a :class:`TongyuanError` naming its file, row, column and value."""

    def __init__(self, errors: list[TongyuanError]) -> None:
        self.errors = list(errors)
        files = list(dict.fromkeys(str(getattr(e, "path", None) or "") for e in self.errors))
        files = [f for f in files if f]
        head = f"{len(self.errors)} problems" + (f" in {', '.join(files[:3])}" if files else "")
        if len(files) > 3:
            head += f" and {len(files) - 3} more files"
        lines = [_cap(str(e).replace("\n", " "), MAX_LINE) for e in self.errors[:MAX_LISTED]]
        if len(self.errors) > MAX_LISTED:
            lines.append(f"... and {len(self.errors) - MAX_LISTED} more ('tongyuan check "
                         "--config <file>' lists every one, also as errors.csv)")
        super().__init__(head + ":\n  " + "\n  ".join(lines))


class Problems:
    """Problems collected one by one and raised together, so that a table with five bad rows
    reports five, not the first: :meth:`add` records an error, :meth:`attempt` runs a check and
    records its error, :meth:`raise_any` raises the one problem itself, or a
    :class:`ConfigErrors` listing them all."""

    def __init__(self) -> None:
        self.errors: list[TongyuanError] = []

    def __bool__(self) -> bool:
        return bool(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def add(self, exc: TongyuanError) -> None:
        self.errors.extend(exc.errors if isinstance(exc, ConfigErrors) else [exc])

    def attempt(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or None with its :class:`TongyuanError` recorded."""
        try:
            return fn(*args, **kwargs)
        except TongyuanError as exc:
            self.add(exc)
            return None

    def raise_any(self) -> None:
        """Raise what was recorded (nothing when nothing was)."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


class MassBalanceError(TongyuanError):
    """read != gridded + outside + rejected, or gridded != written, beyond tolerance."""


class BuildLockedError(TongyuanError):
    """Another build is writing into the same output directory."""


class OutputError(TongyuanError):
    """The output directory cannot take the build: not writable, or the disk is full."""
