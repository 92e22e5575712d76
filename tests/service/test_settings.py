"""Settings: embedded defaults need nothing; production refuses values that only work on a laptop."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from occulta.settings import Settings

pytestmark = pytest.mark.service


def test_embedded_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path}/occulta.db"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert s.storage_url == f"file://{tmp_path}/objects"
    assert s.visibility_timeout > s.audit_hard_time_limit


def test_env_variables_with_the_occulta_prefix_are_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OCCULTA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OCCULTA_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("OCCULTA_S3_SECRET_ACCESS_KEY", "hunter2")
    s = Settings()
    assert s.max_upload_bytes == 1234
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize("secret", ["changeme", "secret", "short"])
def test_production_refuses_placeholder_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="OCCULTA_SECRET_KEY"):
        Settings(
            env="production",
            secret_key=secret,
            database_url="postgresql+psycopg://x/y",
            broker_url="redis://localhost:6379/0",
        )


def test_production_refuses_sqlite_and_the_sqlite_broker(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(env="production", secret_key="a-long-random-secret-value", data_dir=tmp_path)
    assert "SQLite" in str(err.value) and "Redis" in str(err.value)


def test_production_accepts_a_real_configuration() -> None:
    s = Settings(
        env="production",
        secret_key="a-long-random-secret-value",
        database_url="postgresql+psycopg://db/occulta",
        broker_url="redis://redis:6379/0",
        storage_url="s3://bucket/prefix",
    )
    assert s.storage_scheme == "s3"


def test_hard_time_limit_must_exceed_the_soft_one() -> None:
    with pytest.raises(ValidationError, match="HARD_TIME_LIMIT"):
        Settings(audit_soft_time_limit=100, audit_hard_time_limit=100)


def test_celery_config_is_json_only_late_ack_and_one_task_per_child() -> None:
    # One task per child is now a setting (children keep models loaded across shards by default).
    conf = Settings(broker_url="redis://127.0.0.1:6379/0", worker_max_tasks_per_child=1).celery_config()
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_max_tasks_per_child"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]
    # The SQLAlchemy transport passes options to create_engine, which rejects visibility_timeout.
    assert Settings().celery_config()["broker_transport_options"] == {}


def test_worker_children_are_reused_so_a_loaded_model_serves_several_shards() -> None:
    conf = Settings().celery_config()
    assert conf["worker_max_tasks_per_child"] > 1 and Settings().model_cache_size >= 1
