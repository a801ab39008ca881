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
    telemetry: bool = Field(
        default=False,
        description="Let Prefect and MLflow send their usage telemetry to their vendors "
        "(off: nothing is sent anywhere; tasks/__init__.py sets their opt-outs).",
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
    campaign_design: Literal["active", "priority"] = Field(
        default="active",
        description=(
            "How a campaign picks what to label: 'active' (an audit share uniformly over "
            "every slice, the rest by Neyman allocation and uncertainty sampling, labels "
            "weighted by their inclusion probability in the estimate) or 'priority' (the "
            "weakest slices by the ranking rule, stratified across P(correct))."
        ),
    )
    campaign_max_slices: int = Field(
        default=3,
        ge=1,
        description="Priority design: label at most this many of the weakest slices.",
    )
    campaign_min_per_slice: int = Field(
        default=5,
        ge=0,
        description="Priority design: labels each chosen slice gets first, where affordable.",
    )
    campaign_audit_share: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Share of an active campaign's labels spread uniformly over all slices.",
    )
    llm_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description=(
            "Tries after the first of a call to an OpenAI-compatible server (collector and "
            "judge) on a timeout, 429 or 5xx: the openai client's own backoff, Retry-After "
            "honoured."
        ),
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="API key of the OpenAI-compatible server responses come from."
    )

    judge_base_url: str | None = Field(
        default=None,
        description="Base URL of the LLM judge's OpenAI-compatible API, e.g. http://127.0.0.1:8089/v1.",
    )
    judge_model: str | None = Field(default=None, description="Model name the judge requests.")
    judge_max_tokens: int = Field(
        default=256, ge=16, le=8192, description="Most tokens the judge may generate per verdict."
    )
    judge_timeout_s: float = Field(
        default=120.0, gt=0.0, le=3600.0, description="Seconds to wait for one judge verdict."
    )
    judge_price_input_per_mtok: float = Field(
        default=0.0, ge=0.0, description="Judge price in USD per million prompt tokens."
    )
    judge_price_output_per_mtok: float = Field(
        default=0.0, ge=0.0, description="Judge price in USD per million completion tokens."
    )
    label_studio_url: str = Field(
        default="http://127.0.0.1:8091",
        description="Base URL of the Label Studio server (scripts/label-studio starts one here).",
    )
    label_studio_api_key: SecretStr | None = Field(
        default=None,
        description="Label Studio API token; default: the one scripts/label-studio created.",
    )
    label_studio_project: str = Field(
        default="entropy-sentinel",
        min_length=1,
        description="Title of the Label Studio project the labeler creates or reuses.",
    )
    label_studio_price_per_label: float = Field(
        default=0.5, ge=0.0, description="USD paid per human annotation in Label Studio."
    )
    label_studio_show_p_correct: Literal["hidden", "binned", "exact"] = Field(
        default="hidden",
        description=(
            "What annotators see of the estimator's P(correct): 'hidden' (the default: a "
            "number beside the response anchors the verdict), 'binned' (low/medium/high) or "
            "'exact'. The Data Manager can sort by the prediction score in every case."
        ),
    )
    label_studio_poll_s: float = Field(
        default=5.0, gt=0.0, le=3600.0, description="Seconds between polls for new annotations."
    )
    task_runner: Literal["thread", "dask"] = Field(
        default="thread",
        description="Prefect task runner of the nightly loop's chunked featurise/estimate "
        "steps: threads in the flow's process, or a local Dask cluster (prefect-dask).",
    )
    dask_workers: int = Field(
        default=2, ge=1, le=256, description="Dask worker processes when task_runner is dask."
    )
    dask_address: str | None = Field(
        default=None,
        min_length=1,
        description="Scheduler of a running Dask cluster (tcp://host:8786) that takes the "
        "work when task_runner is dask; unset: a local cluster of dask_workers processes. "
        "Its workers need this project installed and the store reachable.",
    )
    thread_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Threads when task_runner is thread; each holds one chunk's rows at a time.",
    )
    monitor_chunk_size: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Traces per featurise/score task of a monitor run (the unit of parallel "
        "work; memory is bounded by featurising 500 traces at a time, not by this).",
    )
    rectify_window: int = Field(
        default=30,
        ge=0,
        le=100_000,
        description="Recent labelled responses per slice whose residual corrects the slice's "
        "label-free estimate on new traffic (0: off).",
    )
    rectify_gate: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Confidence at which a slice's recent mean residual must differ from "
        "zero before it corrects the estimate (0: every slice with enough labels).",
    )
    rectify_min_labels: int = Field(
        default=10,
        ge=2,
        le=100_000,
        description="Fewest recent labelled responses that correct a slice's estimate.",
    )
    drift_min_drop: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Smallest fall of a slice's estimate that may raise a drift alert "
        "(the current interval must also lie below the previous estimate).",
    )
    supervision_min_labels: int = Field(
        default=5,
        ge=1,
        description="Labels a slice needs to enter difficulty-mixed supervision.",
    )
    retrain_folds: int = Field(
        default=5,
        ge=2,
        le=100,
        description="Groups of slices held out in turn when challenger and champion are compared.",
    )
    promote_margin: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="A challenger becomes champion only if its median held-out slice error "
        "is lower than the champion's by at least this much.",
    )
    proxy_port: int = Field(
        default=8700, ge=1, le=65_535, description="Port of `sentinel proxy` on 127.0.0.1."
    )
    proxy_spill_path: Path | None = Field(
        default=None,
        description="JSONL file where the proxy appends traces the store could not take "
        "(`sentinel ingest` stores them later); default <home>/proxy-spill.jsonl.",
    )
    proxy_queue_size: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Traces the proxy holds for its writer; beyond it traces are dropped "
        "and counted (the sentinel_proxy_traces_dropped_total metric).",
    )
    proxy_timeout_s: float = Field(
        default=600.0,
        gt=0.0,
        le=3600.0,
        description="Seconds the proxy waits for the upstream (a timeout answers 504).",
    )

    @property
    def store_url(self) -> str:
        """The trace store URL in force."""
        return self.db_url or f"sqlite:///{self.home / 'sentinel.db'}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
