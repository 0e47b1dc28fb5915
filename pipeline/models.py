"""Transitional alias of :mod:`pipeline.model_ready` for ``pipeline/flows.py``.

Delete this file once ``pipeline/flows.py`` imports :mod:`pipeline.model_ready` (four imports:
``from pipeline import models`` ×3 and ``from pipeline.models import check_formats``).
"""

from pipeline.model_ready import check_days, check_formats, prepare, write_days

__all__ = ["check_days", "check_formats", "prepare", "write_days"]
