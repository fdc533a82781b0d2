"""Reports from runs: ``python -m agefair.report``.

:mod:`~agefair.reporting.sweep_results` collects the members of multiruns and pools seeds;
:mod:`~agefair.reporting.studies` makes each study's tables and figures from them, with the
markdown of :mod:`~agefair.reporting.tables` and the figures of :mod:`~agefair.reporting.plots`,
and writes them into the study's README between markers; :mod:`~agefair.reporting.robustness`
is the robustness study's report. Reporting reads results; it trains and evaluates nothing.
"""
