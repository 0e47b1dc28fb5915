"""Time, the hourly cube, outputs, ledger, publishing and the Prefect flows."""

__version__ = "0.1.0"
