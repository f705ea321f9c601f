"""Declarative mechanistic-interpretability experiment pipelines.

Importing the package stays cheap (no torch, no mlflow) so that the CLI's
``--help`` and config validation answer in well under two seconds; heavy
libraries are imported inside the stages that need them.

It registers the config schema (``config_schema``) and the ``interp.*`` resolvers
with Hydra and OmegaConf, so that Hydra's own ``initialize_config_dir`` + ``compose``
work on ``conf/`` in a notebook as they do for the CLI (see ``interp_pipeline.api``).
"""

__version__ = "0.1.0"

from interp_pipeline.experiments.compose import register as _register  # noqa: E402

_register()
