"""One writer per output format, and the one registry of formats (:data:`FORMATS`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """An output format: the folder of a build it writes into and what its files hold."""

    name: str
    folder: str
    description: str


#: every output format by name, in the order a build writes them
FORMATS: dict[str, Format] = {
    "cf": Format("cf", "hourly", ""),
    "cmaq": Format("cmaq", "cmaq", "I/O API, moles/s and g/s per cell"),
    "wrfchem": Format("wrfchem", "wrfchem", "wrfchemi_d01_*, mol km-2 hr-1 and ug m-2 s-1"),
}
