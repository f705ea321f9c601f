"""Declarative mechanistic-interpretability experiment pipelines.

Importing the package stays cheap (no torch, no mlflow) so that the CLI's
``--help`` and config validation answer in well under two seconds; heavy
libraries are imported inside the stages that need them.
"""

__version__ = "0.1.0"
