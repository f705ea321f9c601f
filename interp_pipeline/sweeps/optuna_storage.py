"""The Optuna study's storage: a SQLite file beside the MLflow store, so a search resumes.

hydra-optuna-sweeper (1.2 and 1.3) pins optuna<3, and optuna 2.10's RDBStorage stamps its
schema version through a bare ``engine.connect()``, which relied on SQLAlchemy 1.x's
autocommit: under SQLAlchemy 2 (which MLflow 3 needs) the stamp is never committed, the
next check asserts and the open transaction locks the file. The two methods below do the
same alembic calls inside a transaction that commits; everything else is optuna's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp_pipeline.tracking.mlflow_tracking import resolve_tracking_uri

STUDY_FILE = "optuna.db"


def study_path(tracking_uri: str | None, outputs: str) -> Path:
    """``optuna.db`` beside a sqlite MLflow store; under the outputs folder for any other store."""
    uri = resolve_tracking_uri(tracking_uri, outputs)
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / STUDY_FILE
    return Path(outputs) / STUDY_FILE


def _patch_optuna_version_stamp() -> None:
    import alembic.migration
    from optuna.storages._rdb import storage as rdb

    if getattr(rdb._VersionManager, "_interp_pipeline_patched", False) or not hasattr(rdb._VersionManager,
                                                                                    "_set_alembic_revision"):
        return

    def set_alembic_revision(self: Any, revision: str) -> None:
        with self.engine.begin() as connection:
            alembic.migration.MigrationContext.configure(connection).stamp(self._create_alembic_script(), revision)

    def get_current_version(self: Any) -> str:
        with self.engine.connect() as connection:
            version = alembic.migration.MigrationContext.configure(connection).get_current_revision()
        assert version is not None
        return version

    rdb._VersionManager._set_alembic_revision = set_alembic_revision
    rdb._VersionManager.get_current_version = get_current_version
    rdb._VersionManager._interp_pipeline_patched = True


def study_storage(tracking_uri: str | None, outputs: str) -> Any:
    """An optuna RDBStorage on :func:`study_path` (the sweeper's ``storage``, instantiated by Hydra)."""
    import optuna

    if optuna.__version__.startswith("2."):
        _patch_optuna_version_stamp()
    path = study_path(tracking_uri, outputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}")
