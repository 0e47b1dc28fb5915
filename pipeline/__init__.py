"""Time, the hourly cube, outputs, ledger, publishing and the Prefect flows."""

import importlib.metadata

__version__ = importlib.metadata.version("tongyuan")  # stated once: pyproject.toml
