"""Settings: one object from the environment, bounded, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sentinel_core.settings import Settings


def test_environment_variables_with_the_prefix_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_HOME", "/data/sentinel")
    monkeypatch.setenv("SENTINEL_MIN_SLICE_N", "50")
    settings = Settings()
    assert settings.home == Path("/data/sentinel")
    assert settings.monitor.min_slice_n == 50
    assert settings.store_url == "sqlite:////data/sentinel/sentinel.db"
    assert settings.tracking_uri == "sqlite:////data/sentinel/mlflow.db"


def test_an_explicit_store_url_wins_over_the_default_file() -> None:
    settings = Settings(db_url="postgresql+psycopg://u@127.0.0.1/db")
    assert settings.store_url == "postgresql+psycopg://u@127.0.0.1/db"


def test_out_of_range_values_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValidationError, match="confidence"):
        Settings(confidence=1.5)


def test_secrets_are_never_shown_in_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_JUDGE_API_KEY", "sk-very-secret")
    settings = Settings()
    assert settings.judge.api_key is not None
    assert settings.judge.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in settings.model_dump_json()


def test_flat_names_land_in_their_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_JUDGE_MODEL", "judge-from-env")
    monkeypatch.setenv("SENTINEL_PROXY_PORT", "8123")
    monkeypatch.setenv("SENTINEL_TASK_RUNNER", "dask")
    settings = Settings(judge_base_url="http://127.0.0.1:9/v1", campaign_audit_share=0.5)
    assert settings.judge.base_url == "http://127.0.0.1:9/v1"
    assert settings.judge.model == "judge-from-env"
    assert settings.proxy.port == 8123
    assert settings.runner.task_runner == "dask"
    assert settings.campaign.audit_share == 0.5


def test_a_keyword_argument_wins_over_the_environment_and_a_section_over_a_flat_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENTINEL_DB_URL", "sqlite:////env.db")
    assert Settings(db_url="sqlite:////kwarg.db").store_url == "sqlite:////kwarg.db"
    both = Settings(db_url="sqlite:////flat.db", store={"db_url": "sqlite:////nested.db"})
    assert both.store_url == "sqlite:////nested.db"


def test_a_dot_env_file_fills_flat_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SENTINEL_JUDGE_MODEL=from-dotenv\nSENTINEL_SEED=7\n")
    monkeypatch.setenv("SENTINEL_SEED", "3")
    settings = Settings()
    assert settings.judge.model == "from-dotenv"
    assert settings.seed == 3  # the process environment wins over the file
    assert Settings(_env_file=None).judge.model is None


def test_settings_validated_from_a_mapping_keep_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment's parameters arrive as a mapping: what it omits (an API key set on
    the worker) comes from the environment, not from the defaults."""
    from pydantic import TypeAdapter

    monkeypatch.setenv("SENTINEL_JUDGE_API_KEY", "sk-on-the-worker")
    settings = TypeAdapter(Settings).validate_python({"store": {"db_url": "sqlite:////p.db"}})
    assert settings.store_url == "sqlite:////p.db"
    assert settings.judge.api_key is not None
    assert settings.judge.api_key.get_secret_value() == "sk-on-the-worker"
    built = Settings()
    assert TypeAdapter(Settings).validate_python(built) is built


def test_override_replaces_by_flat_name_and_refuses_a_typo() -> None:
    settings = Settings(home=Path("/h"))
    changed = settings.override(db_url="sqlite:////x.db", thread_workers=4, seed=9)
    assert changed.store_url == "sqlite:////x.db"
    assert changed.runner.thread_workers == 4
    assert changed.seed == 9
    assert changed.home == Path("/h")
    assert settings.store_url == "sqlite:////h/sentinel.db"  # the original is untouched
    with pytest.raises(ValueError, match="thread_worker"):
        settings.override(thread_worker=4)
    with pytest.raises(ValidationError, match="thread_workers"):
        settings.override(thread_workers=0)


def test_an_unknown_field_in_a_section_is_refused() -> None:
    with pytest.raises(ValidationError, match="base_ur"):
        Settings(judge={"base_ur": "http://x"})
