"""The main job end to end, between the CLI and the packages it wires together:
corpus store -> knowledge store -> microtheory -> grounded QA -> critique, into a run directory,
and the HTML report of that directory.

    config.py    RunConfig, its TOML/JSON loader, the input check before a run
    stages.py    the stages, each returning one typed result (results.py)
    runner.py    run_pipeline: stages in order into a staged run directory, status per stage
    run_dir.py   the run directory's layout, versioned manifest and safe replacement
    summary.py   summary.json and the printed summary
    report.py    the static HTML report of a run directory

Submodules import the heavy libraries lazily, so importing `pipeline` is cheap.
"""
from __future__ import annotations

from pipeline.config import RunConfig, check_inputs, demo_config, load_config
from pipeline.runner import RunOptions, RunResult, run_pipeline
from pipeline.summary import summary_lines

__all__ = ["RunConfig", "RunOptions", "RunResult", "check_inputs", "demo_config", "load_config", "run_pipeline",
           "summary_lines"]
