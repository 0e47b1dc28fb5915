"""Pages that read a published build: the QA report, the comparison of two builds and the
synergy page of a scenario, plus :func:`open_build`, the one way to open a published build.

Modules: :mod:`~pipeline.report.build_dir` (open a build), :mod:`~pipeline.report.html` (HTML
toolkit), :mod:`~pipeline.report.figures` (maps and series), :mod:`~pipeline.report.qa` (the QA
report), :mod:`~pipeline.report.compare` (two builds) and :mod:`~pipeline.report.synergy`
(scenario page). Importing the package selects matplotlib's Agg backend.
"""

from pipeline.report.build_dir import BuildData, open_build
from pipeline.report.compare import compare_builds
from pipeline.report.qa import summary_markdown, write_report
from pipeline.report.synergy import write_synergy_page

__all__ = ["BuildData", "compare_builds", "open_build", "summary_markdown", "write_report",
           "write_synergy_page"]
