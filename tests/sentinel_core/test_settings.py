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
    assert settings.min_slice_n == 50
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
    assert settings.judge_api_key is not None
    assert settings.judge_api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in settings.model_dump_json()
