"""The human labeler: responses go to a Label Studio project, annotators' verdicts come back.

Over 400 lines: the one adapter to Label Studio (interface, task import, annotation
parsing, error mapping).

``LabelStudioLabeler`` is an ``AsyncLabeler``. It creates (or reuses, by
title) a project whose labeling interface shows the question, the response,
the estimator's P(correct) and slice, a required single choice
``correct``/``incorrect`` and an optional comment (``LABEL_CONFIG``).

- ``submit`` imports one task per request, its ``data`` keyed by ``trace_id``.
  It first lists the project's tasks and skips trace ids already there, so a
  rerun, also after a crash between the import and anything after it, never
  creates a duplicate.
- ``collect`` reads the annotated tasks back (every page), keeps those of the
  given trace ids, and parses each annotation once, here, into ``Annotation``;
  nothing downstream digs in Label Studio's ``result`` JSON. Cancelled
  (skipped) annotations are ignored. A task counts once it has the annotations
  Label Studio waits for: two for the overlap share of tasks (``overlap``, Label
  Studio's ``overlap_cohort_percentage`` with ``maximum_annotations=2``), one for
  the rest. The latest annotation decides the label (greatest ``updated_at``, then
  greatest id); every annotation's verdict is kept in the label's ``choices``, so
  the campaign status can report the agreement on the tasks labelled twice. Each
  annotation costs ``price_per_label`` (Label Studio counts annotations, not
  people: a second annotation by the same person counts as a second verdict).

Talks to the server with ``label-studio-sdk``'s v2 client and a legacy API
token (``Authorization: Token <key>``, what ``scripts/label-studio`` creates).
The client is ``LabelStudioBase``, the generated v2 client that
``label_studio_sdk.LabelStudio`` extends: importing ``LabelStudio`` also
imports the SDK's v1 ``_legacy`` package, whose pydantic-v1 validators warn
(``PydanticDeprecatedSince20``) at import, and its extensions (``tasks.list``
defaulting to ``fields="all"``) are untyped; we pass ``fields`` ourselves.
A failed call becomes a ``LabelingError`` saying what was expected and what
came (URL, HTTP status); a connection error, timeout, 429 or 5xx is
retryable. The client's own calls are not retried here: the campaign decides.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal, TypeVar

import httpx
from label_studio_sdk.base_client import LabelStudioBase
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.types.all_roles_project_list import AllRolesProjectList
from label_studio_sdk.types.import_api_request import ImportApiRequest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labeling.base import LabelingError, LabelOutcome, LabelRequest
from sentinel_core.errors import InvalidInputError
from sentinel_core.settings import Settings

T = TypeVar("T")

LABELER = "label-studio"
CHOICE_NAME = "verdict"
"""``from_name`` of the required Choices control (``correct`` / ``incorrect``)."""
COMMENT_NAME = "comment"
"""``from_name`` of the optional TextArea."""
#: Header carrying the shared secret on each webhook delivery (when one is set).
WEBHOOK_SECRET_HEADER: Final = "X-Sentinel-Webhook-Secret"
CORRECT: Final = "correct"
INCORRECT: Final = "incorrect"
PROMPT_NOT_STORED = "(prompt not stored)"
PAGE_SIZE = 100
IMPORT_CHUNK = 500

INSTRUCTIONS: Final = (
    "Mark the response correct when its final answer (often in \\boxed{}) matches the "
    "reference answer: the same value or option, whatever its format or units. Mark it "
    "incorrect when the final answer differs, is missing or the response was cut off. "
    "Judge the final answer, not the reasoning. Skip when you cannot tell."
)
"""What an annotator is asked, shown above every task and as the project's instructions."""

LABEL_CONFIG = f"""<View>
  <Header value="{INSTRUCTIONS}" size="6"/>
  <Header value="Question"/>
  <Text name="question" value="$question"/>
  <Header value="Reference answer"/>
  <Text name="reference" value="$reference"/>
  <Header value="Response"/>
  <View style="white-space: pre-wrap; font-family: monospace;">
    <Text name="response" value="$response"/>
  </View>
  <View style="display: flex; gap: 2em; color: #666;">
    <View>
      <Header value="Estimated P(correct)" size="6"/>
      <Text name="p_correct" value="$p_correct"/>
    </View>
    <View><Header value="Slice" size="6"/><Text name="slice" value="$slice"/></View>
    <View><Header value="Trace" size="6"/><Text name="trace_id" value="$trace_id"/></View>
  </View>
  <Header value="Is the response correct?"/>
  <Choices name="{CHOICE_NAME}" toName="response" choice="single-radio" required="true"
           showInline="true">
    <Choice value="{CORRECT}"/>
    <Choice value="{INCORRECT}"/>
  </Choices>
  <Header value="Comment (optional)" size="6"/>
  <TextArea name="{COMMENT_NAME}" toName="response" rows="2" maxSubmissions="1" editable="true"
            placeholder="Why, if it helps"/>
</View>
"""
"""The project's labeling interface. Task data: ``trace_id``, ``question``,
``reference``, ``response``, ``p_correct`` and ``slice`` (the last two as display
strings); the response keeps its line breaks."""

#: Which P(correct) annotators see (``Settings.label_studio_show_p_correct``).
ShowP = Literal["hidden", "binned", "exact"]
NO_REFERENCE = "(no reference answer)"


class TaskData(BaseModel):
    """What ``submit`` puts in a task's ``data`` (other keys are ignored when read back)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    trace_id: str = Field(min_length=1)
    question: str = PROMPT_NOT_STORED
    reference: str = NO_REFERENCE
    response: str = ""
    p_correct: str = "not estimated"
    slice: str = "(no slice)"

    @classmethod
    def of(cls, request: LabelRequest, *, show_p: ShowP = "exact") -> TaskData:
        """The task data shown for ``request``, its P(correct) as ``show_p`` says."""
        return cls(
            trace_id=request.trace_id,
            question=request.question if request.question else PROMPT_NOT_STORED,
            reference=request.reference if request.reference else NO_REFERENCE,
            response=request.response_text,
            p_correct=shown_p(request.p_correct, show_p),
            slice=request.slice or "(no slice)",
        )


def shown_p(p_correct: float | None, show_p: ShowP) -> str:
    """P(correct) as annotators see it: hidden, a bin, or three decimals."""
    if p_correct is None:
        return "not estimated"
    if show_p == "hidden":
        return "hidden (so it does not anchor your verdict)"
    if show_p == "binned":
        return "low" if p_correct < 1 / 3 else "medium" if p_correct < 2 / 3 else "high"
    return f"{p_correct:.3f}"


def prediction(p_correct: float, *, model_version: str) -> dict[str, Any]:
    """A Label Studio prediction with ``score`` = P(correct) and no verdict, so the Data
    Manager can sort and filter tasks by it without anything to pre-fill.

    The result is empty on purpose: Label Studio's labeling stream respects the
    project's ``show_collab_predictions`` (off), but opening a task from the Data
    Manager's list turns its prediction into a draft annotation whatever that setting
    says (seen in Label Studio 1.23.2: the verdict came pre-selected), which would
    anchor the annotator on the estimator's guess."""
    return {"model_version": model_version, "score": float(p_correct), "result": []}


class _RawResult(BaseModel):
    """One region of an annotation's ``result``, as Label Studio sends it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    from_name: str
    type: str
    value: dict[str, Any]


class _RawAnnotation(BaseModel):
    """An annotation as Label Studio sends it within a task (the fields we read)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    result: list[_RawResult] = Field(default_factory=list)
    was_cancelled: bool = False
    completed_by: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class _RawChoices(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    choices: list[str]


class _RawText(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    text: list[str]


class Annotation(BaseModel):
    """One finished, not cancelled annotation of a task, parsed once."""

    model_config = ConfigDict(frozen=True)

    task_id: int
    trace_id: str
    annotation_id: int
    choice: Literal["correct", "incorrect"]
    comment: str | None
    completed_by: int | None
    updated_at: dt.datetime | None

    @property
    def correct(self) -> bool:
        """Whether the annotator judged the response correct."""
        return self.choice == CORRECT

    def sort_key(self) -> tuple[dt.datetime, int]:
        """Order of recency: the latest update, then the greatest id."""
        return (self.updated_at or dt.datetime.min.replace(tzinfo=dt.UTC), self.annotation_id)


def parse_annotation(task_id: int, trace_id: str, raw: object) -> Annotation | None:
    """``raw`` (one entry of a task's ``annotations``) as an ``Annotation``; None if cancelled.

    Raises ``LabelingError`` naming the task when the annotation does not have
    the shape ``LABEL_CONFIG`` produces: exactly one ``verdict`` choice among
    ``correct``/``incorrect``, and at most one comment.
    """
    where = f"task {task_id} (trace {trace_id!r})"
    try:
        annotation = _RawAnnotation.model_validate(raw)
    except ValidationError as exc:
        raise LabelingError(
            f"{where}: expected an annotation with an integer id and a result list, "
            f"got {_short(raw)} ({_errors(exc)})"
        ) from exc
    if annotation.was_cancelled:
        return None
    where = f"{where}, annotation {annotation.id}"
    verdicts = [r for r in annotation.result if r.from_name == CHOICE_NAME]
    comments = [r for r in annotation.result if r.from_name == COMMENT_NAME]
    expected = f"exactly one {CHOICE_NAME!r} choice of {CORRECT!r} or {INCORRECT!r}"
    if len(verdicts) != 1:
        raise LabelingError(
            f"{where}: expected {expected} in the result, got {len(verdicts)} "
            f"{CHOICE_NAME!r} regions "
            f"(result: {_short([r.model_dump() for r in annotation.result])})"
        )
    try:
        choices = _RawChoices.model_validate(verdicts[0].value).choices
    except ValidationError as exc:
        raise LabelingError(
            f"{where}: expected {expected}, got value {_short(verdicts[0].value)}"
        ) from exc
    if len(choices) != 1 or choices[0] not in (CORRECT, INCORRECT):
        raise LabelingError(f"{where}: expected {expected}, got choices {choices!r}")
    choice: Literal["correct", "incorrect"] = CORRECT if choices[0] == CORRECT else INCORRECT
    if len(comments) > 1:
        raise LabelingError(
            f"{where}: expected at most one {COMMENT_NAME!r} region, got {len(comments)}"
        )
    comment: str | None = None
    if comments:
        try:
            texts = _RawText.model_validate(comments[0].value).text
        except ValidationError as exc:
            raise LabelingError(
                f"{where}: expected the {COMMENT_NAME!r} value to be {{'text': [str, ...]}}, "
                f"got {_short(comments[0].value)}"
            ) from exc
        comment = "\n".join(texts).strip() or None
    return Annotation(
        task_id=task_id,
        trace_id=trace_id,
        annotation_id=annotation.id,
        choice=choice,
        comment=comment,
        completed_by=annotation.completed_by,
        updated_at=annotation.updated_at or annotation.created_at,
    )


#: The webhook actions whose payload carries one annotation and its task.
WEBHOOK_ACTIONS: Final = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


def outcome_from_webhook(
    payload: object, *, price_per_label: float
) -> tuple[LabelOutcome | None, str]:
    """The label one Label Studio webhook delivers, and what was decided about it.

    ``payload`` is the JSON body Label Studio POSTs (``send_payload``): ``action``,
    ``annotation`` and its ``task``. No label (None, with the reason) for another
    action, a task this labeler did not import, a cancelled annotation, or a task in
    the overlap cohort (it needs two verdicts: the campaign's poll collects it). Raises
    ``LabelingError`` naming what was expected when the payload does not have the shape
    Label Studio sends.
    """
    if not isinstance(payload, dict):
        raise LabelingError(f"expected a JSON object from Label Studio, got {_short(payload)}")
    action = payload.get("action")
    if action not in WEBHOOK_ACTIONS:
        return None, f"action {action!r} carries no label"
    task, raw = payload.get("task"), payload.get("annotation")
    if not isinstance(task, dict) or not isinstance(task.get("id"), int):
        raise LabelingError(f"expected a 'task' object with an id in {action}, got {_short(task)}")
    try:
        data = TaskData.model_validate(task.get("data"))
    except ValidationError:
        return None, f"task {task['id']} was not imported by this labeler (no trace_id)"
    overlap = task.get("overlap")
    if isinstance(overlap, int) and overlap > 1:
        return None, f"task {task['id']} needs {overlap} verdicts: left to the campaign's poll"
    annotation = parse_annotation(task["id"], data.trace_id, raw)
    if annotation is None:
        return None, f"annotation on task {task['id']} was cancelled (skipped)"
    project = payload.get("project")
    outcome = LabelOutcome(
        trace_id=data.trace_id,
        correct=annotation.correct,
        cost=price_per_label,
        detail={
            "choices": [annotation.choice],
            "annotation_id": annotation.annotation_id,
            "task_id": annotation.task_id,
            "project_id": project.get("id") if isinstance(project, dict) else None,
            "annotator": annotation.completed_by,
            "comment": annotation.comment,
            "choice": annotation.choice,
            "via": "webhook",
        },
    )
    return outcome, f"{action} on task {task['id']} (trace {data.trace_id!r})"


def latest(annotations: Sequence[Annotation]) -> Annotation:
    """The annotation that decides a trace's label: the most recently updated one."""
    if not annotations:
        raise InvalidInputError("expected at least one annotation, got none")
    return max(annotations, key=Annotation.sort_key)


class LabelStudioLabeler:
    """Human labels through a Label Studio project (see the module's docstring)."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        project_title: str,
        price_per_label: float,
        timeout_s: float = 30.0,
        show_p: ShowP = "hidden",
        model_version: str = "entropy-sentinel",
        overlap: float = 0.0,
    ) -> None:
        if not api_key:
            raise LabelingError(
                "expected a Label Studio API token, got an empty one (set "
                "SENTINEL_LABEL_STUDIO_API_KEY, e.g. to what scripts/label-studio token prints)"
            )
        if not project_title:
            raise InvalidInputError("expected a non-empty Label Studio project title, got ''")
        if not price_per_label >= 0.0:
            raise InvalidInputError(f"expected price_per_label >= 0 USD, got {price_per_label!r}")
        if not 0.0 <= overlap <= 1.0:
            raise InvalidInputError(f"expected an overlap share in [0, 1], got {overlap!r}")
        self.url = url.rstrip("/")
        self.project_title = project_title
        self.price_per_label = float(price_per_label)
        self.show_p: ShowP = show_p
        self.model_version = model_version
        self.overlap = float(overlap)
        self._project_id: int | None = None
        # Ours, so that close() can close it (the SDK never closes the one it makes).
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=True)
        try:
            self._client = LabelStudioBase(
                base_url=self.url, api_key=api_key, timeout=timeout_s, httpx_client=self._http
            )
        except ApiError as exc:
            self._http.close()  # a JWT-shaped key is checked (expiry) when the client is built
            raise LabelingError(
                f"expected a usable Label Studio API token, got one the client refused: {exc.body}"
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelStudioLabeler:
        """The labeler the settings describe; a missing token is a clear ``LabelingError``."""
        key = settings.label_studio.api_key
        if key is None or not key.get_secret_value():
            raise LabelingError(
                "expected a Label Studio API token in the settings, got none: set "
                "SENTINEL_LABEL_STUDIO_API_KEY (scripts/label-studio token prints the token "
                "of the server scripts/label-studio start runs)"
            )
        return cls(
            url=settings.label_studio.url,
            api_key=key.get_secret_value(),
            project_title=settings.label_studio.project,
            price_per_label=settings.label_studio.price_per_label,
            show_p=settings.label_studio.show_p_correct,
            model_version=settings.tracking.registered_model,
            overlap=settings.label_studio.overlap,
        )

    def close(self) -> None:
        """Close the HTTP connections (the labeler is unusable afterwards)."""
        self._http.close()

    def __enter__(self) -> LabelStudioLabeler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        """The labeler kind stored with each label."""
        return LABELER

    @property
    def annotators_per_task(self) -> int:
        """The most annotations a task may need: 2 with an overlap share, else 1."""
        return 2 if self.overlap > 0.0 else 1

    def max_cost(self, request: LabelRequest) -> float:
        """The most one task can cost (USD): two annotations where overlap may pick it."""
        return self.price_per_label * self.annotators_per_task

    def project_id(self) -> int:
        """The id of the project titled ``project_title``, created on first use."""
        if self._project_id is not None:
            return self._project_id
        projects = list(self._iter_projects())
        same = sorted(
            (p for p in projects if p.title == self.project_title and p.id is not None),
            key=lambda p: p.id or 0,
        )
        if same:
            project = same[0]
            parsed = project.parsed_label_config or {}
            control = parsed.get(CHOICE_NAME) if isinstance(parsed, dict) else None
            if not isinstance(control, dict) or control.get("type") != "Choices":
                raise LabelingError(
                    f"expected project {project.id} {self.project_title!r} at {self.url} to have "
                    f"a Choices control named {CHOICE_NAME!r} (the labeler's config), got "
                    f"controls {sorted(parsed) if isinstance(parsed, dict) else parsed!r}; "
                    "choose another SENTINEL_LABEL_STUDIO_PROJECT"
                )
            assert project.id is not None
            self._project_id = project.id
        else:
            created = self._call(
                f"a new project {self.project_title!r}",
                lambda: self._client.projects.create(
                    title=self.project_title,
                    label_config=LABEL_CONFIG,
                    description="Entropy Sentinel: is each LLM response correct?",
                    expert_instruction=INSTRUCTIONS,
                    show_instruction=True,
                    show_collab_predictions=False,
                    show_skip_button=True,
                    # Label Studio's own overlap: this share of the tasks (the "cohort")
                    # waits for two annotations before it counts as labelled.
                    maximum_annotations=self.annotators_per_task,
                    overlap_cohort_percentage=round(100 * self.overlap),
                    show_overlap_first=True,
                ),
            )
            if created.id is None:
                raise LabelingError(
                    f"expected the new project's id from {self.url}, got a project without one"
                )
            self._project_id = created.id
        return self._project_id

    def register_webhook(self, url: str, *, secret: str | None = None) -> int:
        """Have Label Studio POST the project's new and updated annotations to ``url``
        (with their task); the webhook's id. Idempotent: a webhook of the project with
        the same URL is reused (and its secret header updated)."""
        project = self.project_id()
        headers = {} if secret is None else {WEBHOOK_SECRET_HEADER: secret}
        hooks = self._call(
            f"the webhooks of project {project}",
            lambda: self._client.webhooks.list(project=str(project)),
        )
        # Everything a webhook of ours says, on creation and on reuse alike (an update
        # without ``actions`` would clear them).
        spec: dict[str, Any] = {
            "url": url,
            "headers": headers,
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": list(WEBHOOK_ACTIONS),
            "is_active": True,
        }
        for hook in hooks:
            if hook.url == url and hook.id is not None:
                self._call(
                    f"an update of webhook {hook.id}",
                    partial(self._client.webhooks.update, hook.id, **spec),
                )
                return int(hook.id)
        created = self._call(
            f"a new webhook to {url} on project {project}",
            partial(self._client.webhooks.create, project=project, **spec),
        )
        if created.id is None:
            raise LabelingError(f"expected the new webhook's id from {self.url}, got none")
        return int(created.id)

    def existing_trace_ids(self) -> set[str]:
        """The trace ids the project's tasks already carry."""
        return {task.data.trace_id for task in self._iter_tasks(with_annotations=False)}

    def submit(self, requests: Sequence[LabelRequest]) -> int:
        """Import tasks for the requests whose trace id the project lacks; how many were new."""
        if not requests:
            return 0
        project = self.project_id()
        present = self.existing_trace_ids()
        new: dict[str, LabelRequest] = {}
        for request in requests:
            if request.trace_id not in present and request.trace_id not in new:
                new[request.trace_id] = request
        items = list(new.values())
        imported = 0
        for start in range(0, len(items), IMPORT_CHUNK):
            chunk = items[start : start + IMPORT_CHUNK]
            # model_construct: the SDK's generated model requires each prediction's
            # ``task``, which the import API itself fills in (predictions ride along with
            # their task in the one import, so no task is ever left without its score).
            payload = [
                ImportApiRequest.model_construct(
                    data=TaskData.of(item, show_p=self.show_p).model_dump(),
                    predictions=self._predictions(item),
                )
                for item in chunk
            ]
            response = self._call(
                f"an import of {len(chunk)} tasks into project {project}",
                partial(
                    self._client.projects.import_tasks,
                    project,
                    request=payload,
                    return_task_ids=True,
                ),
            )
            count = response.task_count
            if count is not None and count != len(chunk):
                raise LabelingError(
                    f"expected project {project} at {self.url} to import {len(chunk)} tasks, "
                    f"got {count} imported"
                )
            imported += len(chunk)
        return imported

    def _predictions(self, request: LabelRequest) -> list[Any]:
        """The task's prediction (plain dicts: the import API fills in each ``task``)."""
        if request.p_correct is None:
            return []
        return [prediction(request.p_correct, model_version=self.model_version)]

    def annotations(self, trace_ids: Collection[str]) -> list[Annotation]:
        """Every finished, not cancelled annotation of tasks with these trace ids."""
        wanted = set(trace_ids)
        found: list[Annotation] = []
        if not wanted:
            return found
        for task in self._iter_tasks(with_annotations=True):
            if task.data.trace_id not in wanted:
                continue
            parsed = [parse_annotation(task.id, task.data.trace_id, raw) for raw in task.raw]
            done = [a for a in parsed if a is not None]
            # A task in the overlap cohort is labelled once it has all its annotators.
            if len(done) >= task.overlap:
                found.extend(done)
        return found

    def collect(self, trace_ids: Collection[str]) -> list[LabelOutcome]:
        """The labels among ``trace_ids``: one per trace, from its latest annotation."""
        by_trace: dict[str, list[Annotation]] = {}
        for annotation in self.annotations(trace_ids):
            by_trace.setdefault(annotation.trace_id, []).append(annotation)
        outcomes = []
        for trace_id in sorted(by_trace):
            annotations = sorted(by_trace[trace_id], key=Annotation.sort_key)
            chosen = latest(annotations)
            outcomes.append(
                LabelOutcome(
                    trace_id=trace_id,
                    correct=chosen.correct,
                    cost=self.price_per_label * len(annotations),
                    detail={
                        # Every annotator's verdict, oldest first: the campaign status
                        # reads the agreement of the tasks with two from here.
                        "choices": [a.choice for a in annotations],
                        "annotation_id": chosen.annotation_id,
                        "task_id": chosen.task_id,
                        "project_id": self.project_id(),
                        "annotator": chosen.completed_by,
                        "comment": chosen.comment,
                        "choice": chosen.choice,
                    },
                )
            )
        return outcomes

    def _iter_projects(self) -> Iterator[AllRolesProjectList]:
        """The projects the server lists for ``title=project_title``, every page.

        Pages are walked by hand, not with the SDK's pager: that one asks for the
        page after the last, which the server answers with 404 "Invalid page".
        """
        what = f"the list of projects titled {self.project_title!r}"
        for page in range(1, 1_000_000):
            pager = self._call(
                what,
                partial(
                    self._client.projects.list,
                    title=self.project_title,
                    page=page,
                    page_size=PAGE_SIZE,
                ),
            )
            items = pager.items or []
            yield from items
            if not items or pager.response.next is None:
                return

    def _iter_tasks(self, *, with_annotations: bool) -> Iterator[_Task]:
        """The project's tasks (id, data, raw annotations, annotations needed), every page.

        Tasks whose data has no ``trace_id`` (not imported by this labeler) are
        skipped. Pages are walked by hand, as in ``_iter_projects``.
        """
        project = self.project_id()
        what = f"the tasks of project {project}"
        seen = 0
        for page in range(1, 1_000_000):
            try:
                pager = self._call(
                    what,
                    partial(
                        self._client.tasks.list,
                        project=project,
                        fields="all" if with_annotations else "task_only",
                        page=page,
                        page_size=PAGE_SIZE,
                    ),
                )
            except LabelingError as exc:
                # A page past the end is a 404 "Invalid page": the list shrank meanwhile.
                cause = exc.__cause__
                if page > 1 and isinstance(cause, ApiError) and cause.status_code == 404:
                    return
                raise
            tasks = pager.items or []
            seen += len(tasks)
            for task in tasks:
                if task.id is None:
                    continue
                try:
                    data = TaskData.model_validate(task.data)
                except ValidationError:
                    continue
                # The SDK's model types `annotations` as a string; the server sends a list.
                raw: object = getattr(task, "annotations", None)
                if raw is None:
                    raw = []
                if not isinstance(raw, list):
                    raise LabelingError(
                        f"task {task.id} (trace {data.trace_id!r}): expected a list of "
                        f"annotations from {self.url}, got {_short(raw)}"
                    )
                overlap = getattr(task, "overlap", None)
                yield _Task(task.id, data, list(raw), overlap if isinstance(overlap, int) else 1)
            if len(tasks) < PAGE_SIZE or seen >= pager.response.total:
                return

    def _call(self, expected: str, call: Callable[[], T]) -> T:
        """``call()``, its failures turned into a ``LabelingError`` that says what came."""
        try:
            return call()
        except ApiError as exc:
            status = exc.status_code
            hint = ""
            if status in (401, 403):
                hint = (
                    " (check SENTINEL_LABEL_STUDIO_API_KEY against scripts/label-studio token; "
                    "the organisation must accept legacy API tokens)"
                )
            raise LabelingError(
                f"expected {expected} from Label Studio at {self.url}, got HTTP {status}: "
                f"{_short(exc.body)}{hint}",
                retryable=status is not None and (status == 429 or status >= 500),
            ) from exc
        except httpx.TimeoutException as exc:
            raise LabelingError(
                f"expected {expected} from Label Studio at {self.url}, got no answer in time "
                f"({type(exc).__name__})",
                retryable=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise LabelingError(
                f"expected {expected} from Label Studio at {self.url}, got a connection error: "
                f"{type(exc).__name__}: {exc} (is it running? scripts/label-studio status)",
                retryable=True,
            ) from exc


@dataclass(frozen=True, slots=True)
class _Task:
    id: int
    data: TaskData
    raw: list[object]
    overlap: int  # annotations Label Studio waits for (2 in the overlap cohort)


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()
    )
