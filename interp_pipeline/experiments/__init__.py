"""An experiment from its name to its exit status, for every door (the CLI, ``interp_pipeline.api``,
the rehearsal): config (ExperimentConfig, which assembles every group's schema), catalog (what
conf/experiment/ offers), compose (the one composer), expect_overrides (``expect.`` overrides in
the forms people type), run (one invocation: validate, track, run, check ``expect:``; and the
one in-process launcher).
"""
