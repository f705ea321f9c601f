"""One way to add stages, synthetic tasks and stage-cache codecs: Python entry points.

A module listed under one of the groups below is imported before that kind of thing is
looked up; importing it registers what it defines (``@stage``, ``@register_task``,
``register_codec``). This package lists its own modules in pyproject.toml, and any other
installed package can add its own the same way, with no ``runner.plugins`` line:

    [project.entry-points."interp_pipeline.stages"]
    my_stages = "my_package.stages"

``runner.plugins`` stays for modules that are importable but not installed (a notebook's
folder on PYTHONPATH).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, distribution, entry_points

GROUPS = {"stages": "interp_pipeline.stages", "tasks": "interp_pipeline.tasks", "codecs": "interp_pipeline.codecs"}
_loaded: set[str] = set()


def plugin_modules(kind: str) -> list[str]:
    """The modules registered under ``kind`` (a key of GROUPS), in name order."""
    try:
        distribution("interp_pipeline")
    except PackageNotFoundError:  # a source tree on sys.path alone: its entry points are nowhere to be read
        raise RuntimeError("interp_pipeline is not installed, so its stages, tasks and codecs cannot be found; "
                           "install it (bash scripts/setup.sh, or pip install -e .)") from None
    found = entry_points(group=GROUPS[kind])
    return [point.value for point in sorted(found, key=lambda point: point.name)]


def load_plugins(kind: str) -> None:
    """Import every module registered under ``kind``, once per process."""
    if kind in _loaded:
        return
    for module in plugin_modules(kind):
        importlib.import_module(module)
    _loaded.add(kind)
