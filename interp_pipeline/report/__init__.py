"""Reports of what a run reproduced: each expect entry beside its source, tolerance and value got,
with the run's figures; one page per run, and one for a suite of runs (interp_pipeline.cli.repro)."""
