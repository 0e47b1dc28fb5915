"""Transitional alias of :mod:`sources.measures` for ``pipeline/flows.py``.

Delete this file once ``pipeline/flows.py`` imports ``load_scenario`` from
:mod:`sources.measures`.
"""

from sources.measures import load_scenario

__all__ = ["load_scenario"]
