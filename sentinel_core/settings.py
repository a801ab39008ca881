"""One settings object, built once at the edge and passed down.

Values come from keyword arguments, then ``SENTINEL_*`` environment variables,
then a ``.env`` file in the working directory, then the defaults below.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of Entropy Sentinel, typed, bounded and described."""

    model_config = SettingsConfigDict(
        env_prefix="SENTINEL_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".sentinel"),
        description="Folder for the embedded defaults: the SQLite store and the MLflow store.",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the trace store; default sqlite:///<home>/sentinel.db.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.",
    )
    registered_model: str = Field(
        default="entropy-sentinel-estimator",
        min_length=1,
        description="Name of the estimator in the MLflow model registry.",
    )
    keep_prompt_text: bool = Field(
        default=False, description="Store prompt text with traces (only its hash otherwise)."
    )
    ingest_batch_size: int = Field(
        default=500, ge=1, le=100_000, description="Traces per committed ingest batch."
    )
    logprobs_dtype: Literal["float32", "float16"] = Field(
        default="float32", description="dtype of the raw top-k logprob blobs in the store."
    )
    min_slice_n: int = Field(
        default=30, ge=1, description="Slices with fewer traces are flagged as too few."
    )
    confidence: float = Field(
        default=0.9, gt=0.0, lt=1.0, description="Nominal coverage of slice intervals."
    )
    n_bootstrap: int = Field(
        default=2000, ge=100, le=100_000, description="Bootstrap resamples per slice."
    )
    seed: int = Field(default=0, description="Seed of every random draw.")
    judge_api_key: SecretStr | None = Field(
        default=None, description="API key of the LLM judge's OpenAI-compatible server."
    )
    llm_max_tokens: int = Field(
        default=512, ge=1, le=32_768, description="Most tokens generated per collected response."
    )
    llm_timeout_s: float = Field(
        default=300.0, gt=0.0, le=3600.0, description="Seconds to wait for one LLM response."
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="API key of the OpenAI-compatible server responses come from."
    )

    @property
    def store_url(self) -> str:
        """The trace store URL in force."""
        return self.db_url or f"sqlite:///{self.home / 'sentinel.db'}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
