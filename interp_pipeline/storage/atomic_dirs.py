"""Directories that appear whole or not at all: built beside their final place, fsynced, renamed.

Stage-cache entries and the checkpoints of model and SAE training are all written this
way, so that a crash or a kill -9 never leaves something half-written under a name
that is read as finished.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from interp_pipeline.storage.locks import pid_alive

TEMPORARY = ".tmp-"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Every file and directory under ``root`` on disk, so a rename of ``root`` publishes them whole."""
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            fd = os.open(os.path.join(dirpath, filename), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def temporary_for(final: Path) -> Path:
    """A fresh, empty hidden sibling of ``final`` to build in, named after this process."""
    temporary = final.parent / f"{TEMPORARY}{final.name}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    return temporary


def publish(temporary: Path, final: Path) -> Path:
    """Put ``temporary`` in ``final``'s place (replacing what was there), durably."""
    fsync_tree(temporary)
    if final.exists():
        shutil.rmtree(final)
    os.rename(temporary, final)
    fsync_dir(final.parent)
    return final


def remove_abandoned(directory: Path) -> None:
    """Temporaries under ``directory`` left by processes that were killed mid-write."""
    for other in directory.iterdir():
        if other.name.startswith(TEMPORARY) and not pid_alive(_pid_of(other)):
            shutil.rmtree(other, ignore_errors=True)


def _pid_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
