"""The one exception family of Tongyuan.

Every message names where the problem is (file, row, column), the value that was wrong and what
would be right, so that inventory staff can fix the input without reading code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TongyuanError(Exception):
    """Base class of every error Tongyuan raises on purpose."""


def located(path: str | Path | None, problem: str, *, row: int | None = None,
            column: str | None = None, value: Any = None, expected: str | None = None,
            source_id: str | None = None) -> str:
    """``"<file>, row <n>, source_id <id>, column <c>: <problem>; got <v>; expected <e>"``,
    leaving out what is not given: the one way Tongyuan writes where a problem is."""
    where = [str(path) if path is not None else "<input>"]
    if row is not None:
        where.append(f"row {row}")
    if source_id is not None:
        where.append(f"source_id {source_id!r}")
    if column is not None:
        where.append(f"column {column!r}")
    msg = ", ".join(where) + f": {problem}"
    if value is not None or (row is not None and column is not None):
        msg += f"; got {value!r}"
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

    @classmethod
    def at(cls, path: str | Path, problem: str, **where: Any) -> ConfigError:
        """An error in one row or column of a configuration table, located like
        :class:`InputError` (keywords ``row``, ``column``, ``value``, ``expected``)."""
        return cls(located(path, problem, **where))


class MassBalanceError(TongyuanError):
    """read != gridded + outside + rejected, or gridded != written, beyond tolerance."""


class BuildLockedError(TongyuanError):
    """Another build is writing into the same output directory."""
