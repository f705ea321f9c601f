"""Multirun sweeps: the objective a sweeper optimises, each job's result, and the sweep's summary run."""
