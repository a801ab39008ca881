"""One settings object per run, built once at the edge and passed down.

``Settings`` is a nested pydantic model: a section per part of the system
(``store``, ``tracking``, ``monitor``, ``training``, ``campaign``, ``judge``,
``label_studio``, ``llm``, ``runner``, ``proxy``) beside the three values every part
shares (``home``, ``seed``, ``telemetry``). A flow takes the object as one parameter
and hands it to its tasks and subflows; nothing rebuilds it on the way down.

The environment stays flat, as users write it: ``SENTINEL_<NAME>``, where ``<NAME>``
is the section's prefix and the field (``SENTINEL_JUDGE_BASE_URL`` is
``settings.judge.base_url``, ``SENTINEL_DB_URL`` is ``settings.store.db_url``).
Keyword arguments take the same flat names (``Settings(db_url=...)``) or whole
sections (``Settings(store={"db_url": ...})``).

Values come from keyword arguments, then ``SENTINEL_*`` environment variables,
then a ``.env`` file in the working directory, then the defaults below.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "SENTINEL_"
#: Set while ``Settings.__init__`` runs (it reads the environment itself).
_IN_INIT: ContextVar[bool] = ContextVar("_IN_INIT", default=False)


class _Section(BaseModel):
    """A group of settings; its fields' environment names start with ``env_prefix``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    env_prefix: ClassVar[str] = ""


class StoreSettings(_Section):
    """Where traces live and how they are stored."""

    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the trace store; default sqlite:///<home>/sentinel.db.",
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


class TrackingSettings(_Section):
    """The MLflow tracking store and the registered estimator."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.",
    )
    registered_model: str = Field(
        default="entropy-sentinel-estimator",
        min_length=1,
        description="Name of the estimator in the MLflow model registry.",
    )


class MonitorSettings(_Section):
    """How slices are estimated and compared night to night."""

    min_slice_n: int = Field(
        default=30, ge=1, description="Slices with fewer traces are flagged as too few."
    )
    confidence: float = Field(
        default=0.9, gt=0.0, lt=1.0, description="Nominal coverage of slice intervals."
    )
    n_bootstrap: int = Field(
        default=2000, ge=100, le=100_000, description="Bootstrap resamples per slice."
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


class TrainingSettings(_Section):
    """How a challenger is trained and when it is promoted."""

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


class CampaignSettings(_Section):
    """How a labeling campaign spends its budget."""

    env_prefix: ClassVar[str] = "campaign_"

    design: Literal["active", "priority"] = Field(
        default="active",
        description=(
            "How a campaign picks what to label: 'active' (an audit share uniformly over "
            "every slice, the rest where it narrows the slices' intervals most, with "
            "uncertainty sampling inside a slice, labels "
            "weighted by their inclusion probability in the estimate) or 'priority' (the "
            "weakest slices by the ranking rule, stratified across P(correct))."
        ),
    )
    max_slices: int = Field(
        default=3,
        ge=1,
        description="Priority design: label at most this many of the weakest slices.",
    )
    min_per_slice: int = Field(
        default=5,
        ge=0,
        description="Priority design: labels each chosen slice gets first, where affordable.",
    )
    audit_share: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Share of an active campaign's labels spread uniformly over all slices.",
    )


class JudgeSettings(_Section):
    """The LLM judge's OpenAI-compatible server and its prices."""

    env_prefix: ClassVar[str] = "judge_"

    base_url: str | None = Field(
        default=None,
        description="Base URL of the LLM judge's OpenAI-compatible API, e.g. http://127.0.0.1:8089/v1.",
    )
    model: str | None = Field(default=None, description="Model name the judge requests.")
    api_key: SecretStr | None = Field(
        default=None, description="API key of the LLM judge's OpenAI-compatible server."
    )
    max_tokens: int = Field(
        default=256, ge=16, le=8192, description="Most tokens the judge may generate per verdict."
    )
    timeout_s: float = Field(
        default=120.0, gt=0.0, le=3600.0, description="Seconds to wait for one judge verdict."
    )
    price_input_per_mtok: float = Field(
        default=0.0, ge=0.0, description="Judge price in USD per million prompt tokens."
    )
    price_output_per_mtok: float = Field(
        default=0.0, ge=0.0, description="Judge price in USD per million completion tokens."
    )


class LabelStudioSettings(_Section):
    """The Label Studio server annotators work in."""

    env_prefix: ClassVar[str] = "label_studio_"

    url: str = Field(
        default="http://127.0.0.1:8091",
        description="Base URL of the Label Studio server (scripts/label-studio starts one here).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Label Studio API token; default: the one scripts/label-studio created.",
    )
    project: str = Field(
        default="entropy-sentinel",
        min_length=1,
        description="Title of the Label Studio project the labeler creates or reuses.",
    )
    price_per_label: float = Field(
        default=0.5, ge=0.0, description="USD paid per human annotation in Label Studio."
    )
    show_p_correct: Literal["hidden", "binned", "exact"] = Field(
        default="hidden",
        description=(
            "What annotators see of the estimator's P(correct): 'hidden' (the default: a "
            "number beside the response anchors the verdict), 'binned' (low/medium/high) or "
            "'exact'. The Data Manager can sort by the prediction score in every case."
        ),
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret Label Studio sends with each webhook delivery "
        "(`sentinel campaign receive` refuses deliveries without it; unset: none asked).",
    )
    overlap: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of Label Studio tasks labelled twice, so that annotator agreement "
        "is known (`sentinel campaign status`); e.g. 0.1. Off by default because it costs: "
        "Label Studio picks which tasks, so the campaign reserves two labels' price for "
        "every task and releases what is not spent.",
    )
    poll_s: float = Field(
        default=5.0, gt=0.0, le=3600.0, description="Seconds between polls for new annotations."
    )


class LLMSettings(_Section):
    """The OpenAI-compatible server `sentinel collect` asks for responses."""

    env_prefix: ClassVar[str] = "llm_"

    api_key: SecretStr | None = Field(
        default=None, description="API key of the OpenAI-compatible server responses come from."
    )
    max_tokens: int = Field(
        default=512, ge=1, le=32_768, description="Most tokens generated per collected response."
    )
    timeout_s: float = Field(
        default=300.0, gt=0.0, le=3600.0, description="Seconds to wait for one LLM response."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description=(
            "Tries after the first of a call to an OpenAI-compatible server (collector and "
            "judge) on a timeout, 429 or 5xx: the openai client's own backoff, Retry-After "
            "honoured."
        ),
    )


class RunnerSettings(_Section):
    """Where the nightly loop's chunked work runs."""

    task_runner: Literal["thread", "dask"] = Field(
        default="thread",
        description="Prefect task runner of the nightly loop's chunked featurise/estimate "
        "steps: threads in the flow's process, or a local Dask cluster (prefect-dask).",
    )
    thread_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Threads when task_runner is thread; each holds one chunk's rows at a time.",
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


class ProxySettings(_Section):
    """`sentinel proxy`: its port, queue and spill file."""

    env_prefix: ClassVar[str] = "proxy_"

    port: int = Field(
        default=8700, ge=1, le=65_535, description="Port of `sentinel proxy` on 127.0.0.1."
    )
    spill_path: Path | None = Field(
        default=None,
        description="JSONL file where the proxy appends traces the store could not take "
        "(`sentinel ingest` stores them later); default <home>/proxy-spill.jsonl.",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Traces the proxy holds for its writer; beyond it traces are dropped "
        "and counted (the sentinel_proxy_traces_dropped_total metric).",
    )
    timeout_s: float = Field(
        default=600.0,
        gt=0.0,
        le=3600.0,
        description="Seconds the proxy waits for the upstream (a timeout answers 504).",
    )


class Settings(BaseSettings):
    """Every knob of Entropy Sentinel, typed, bounded, described and grouped."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".sentinel"),
        description="Folder for the embedded defaults: the SQLite store and the MLflow store.",
    )
    seed: int = Field(default=0, description="Seed of every random draw.")
    telemetry: bool = Field(
        default=False,
        description="Let Prefect and MLflow send their usage telemetry to their vendors "
        "(off: nothing is sent anywhere; tasks/__init__.py sets their opt-outs).",
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    campaign: CampaignSettings = Field(default_factory=CampaignSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)

    def __init__(self, **values: Any) -> None:
        token = _IN_INIT.set(True)
        try:
            super().__init__(**values)
        finally:
            _IN_INIT.reset(token)

    @model_validator(mode="wrap")
    @classmethod
    def _read_environment(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Settings validated from a mapping (a deployment's parameters, ``model_validate``)
        read the environment too, as ``Settings(**mapping)`` does: what the mapping omits
        comes from ``SENTINEL_*``, not from the defaults (a worker's API keys are kept)."""
        if isinstance(data, dict) and not _IN_INIT.get():
            return cls(**data)
        return handler(data)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env_file = (
            dotenv_settings.env_file if isinstance(dotenv_settings, DotEnvSettingsSource) else None
        )
        return (
            init_settings,
            _FlatEnvironment(settings_cls, from_dotenv=False),
            env_settings,
            _FlatEnvironment(settings_cls, from_dotenv=True, env_file=env_file),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """Move flat names (``db_url``, ``judge_base_url``) into their sections.

        A field given inside its section wins over the same field given flat.
        """
        if not isinstance(data, dict):
            return data
        nested = dict(data)
        for flat in [key for key in data if key.lower() in FLAT_NAMES]:
            section, field = FLAT_NAMES[flat.lower()]
            value = nested.pop(flat)
            current = nested.get(section)
            if isinstance(current, BaseModel):
                continue
            if current is None:
                current = {}
            if not isinstance(current, dict):
                raise ValueError(
                    f"expected the {section!r} settings as a mapping, got {type(current).__name__}"
                )
            nested[section] = {field: value, **current}
        return nested

    def override(self, **flat: Any) -> Settings:
        """A copy with some values replaced, by flat name (``db_url=...``), validated."""
        values = self.model_dump()
        for name, value in flat.items():
            if name in FLAT_NAMES:
                section, field = FLAT_NAMES[name]
                values[section][field] = value
            elif name in type(self).model_fields:
                values[name] = value
            else:
                raise ValueError(
                    f"expected a setting's flat name (db_url, judge_model, ...), got {name!r}"
                )
        return type(self).model_validate(values)

    @property
    def store_url(self) -> str:
        """The trace store URL in force."""
        return self.store.db_url or f"sqlite:///{self.home / 'sentinel.db'}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force."""
        return self.tracking.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"


def _sections() -> dict[str, type[_Section]]:
    found: dict[str, type[_Section]] = {}
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, _Section):
            found[name] = kind
    return found


#: Flat (environment) name -> (section, field): ``"judge_base_url" -> ("judge", "base_url")``.
FLAT_NAMES: dict[str, tuple[str, str]] = {
    kind.env_prefix + field: (section, field)
    for section, kind in _sections().items()
    for field in kind.model_fields
}


class _FlatEnvironment(PydanticBaseSettingsSource):
    """``SENTINEL_<flat name>`` from the process environment or from a ``.env`` file."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *,
        from_dotenv: bool,
        env_file: Any = None,
    ) -> None:
        super().__init__(settings_cls)
        self._from_dotenv = from_dotenv
        self._env_file = env_file

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # every value comes from __call__

    def _variables(self) -> dict[str, str | None]:
        if not self._from_dotenv:
            return dict(os.environ)
        from dotenv import dotenv_values

        files = self._env_file if isinstance(self._env_file, (list, tuple)) else [self._env_file]
        found: dict[str, str | None] = {}
        for path in files:
            if path is not None and Path(path).expanduser().is_file():
                found.update(dotenv_values(Path(path).expanduser()))
        return found

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        values: dict[str, Any] = {}
        for name, value in self._variables().items():
            key = name.lower()
            if value is not None and key.startswith(prefix) and key[len(prefix) :] in FLAT_NAMES:
                values[key[len(prefix) :]] = value
        return values
