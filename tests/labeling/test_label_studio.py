"""The Label Studio labeler against a real Label Studio server (tests/labeling/conftest.py)."""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from label_studio_sdk.base_client import LabelStudioBase
from label_studio_sdk.types.import_api_request import ImportApiRequest
from pydantic import SecretStr

from labeling import label_studio as label_studio_module
from labeling.base import AsyncLabeler, LabelingError, LabelRequest
from labeling.label_studio import (
    CHOICE_NAME,
    COMMENT_NAME,
    LABEL_CONFIG,
    PROMPT_NOT_STORED,
    LabelStudioLabeler,
    TaskData,
    parse_annotation,
)
from sentinel_core.errors import InvalidInputError
from sentinel_core.settings import Settings
from tests.labeling.conftest import LabelStudioServer

PRICE = 0.25


@pytest.fixture
def project_title() -> str:
    """A project title no other test uses."""
    return f"sentinel-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def labeler(label_studio: LabelStudioServer, project_title: str) -> Iterator[LabelStudioLabeler]:
    with LabelStudioLabeler(
        url=label_studio.url,
        api_key=label_studio.token,
        project_title=project_title,
        price_per_label=PRICE,
    ) as labeler:
        yield labeler


@pytest.fixture
def sdk(label_studio: LabelStudioServer) -> Iterator[LabelStudioBase]:
    with httpx.Client(timeout=30) as client:
        yield LabelStudioBase(
            base_url=label_studio.url, api_key=label_studio.token, httpx_client=client
        )


def _requests(*trace_ids: str) -> list[LabelRequest]:
    return [
        LabelRequest(
            trace_id=trace_id,
            response_text=f"The answer is \\boxed{{{i}}}.",
            question=None if i % 2 else f"What is {i}?",
            reference=None if i % 2 else str(i),
            p_correct=0.5 + i / 100,
            slice="math/easy",
        )
        for i, trace_id in enumerate(trace_ids)
    ]


def _tasks(sdk: LabelStudioBase, project: int) -> list[Any]:
    """Every task of the project, through the SDK (one page is enough here)."""
    pager = sdk.tasks.list(project=project, fields="task_only", page_size=1000)
    return list(pager.items or [])


def _task_id(sdk: LabelStudioBase, project: int, trace_id: str) -> int:
    matches = [t.id for t in _tasks(sdk, project) if t.data["trace_id"] == trace_id]
    assert len(matches) == 1, matches
    task_id: int = matches[0]
    return task_id


def _annotate(
    http: httpx.Client,
    task_id: int,
    *,
    choice: str | None,
    comment: str | None = None,
    was_cancelled: bool = False,
) -> int:
    """POST an annotation to a task the way Label Studio's web editor does; its id."""
    result: list[dict[str, Any]] = []
    if choice is not None:
        result.append(
            {
                "id": uuid.uuid4().hex[:10],
                "from_name": CHOICE_NAME,
                "to_name": "response",
                "type": "choices",
                "origin": "manual",
                "value": {"choices": [choice]},
            }
        )
    if comment is not None:
        result.append(
            {
                "id": uuid.uuid4().hex[:10],
                "from_name": COMMENT_NAME,
                "to_name": "response",
                "type": "textarea",
                "origin": "manual",
                "value": {"text": [comment]},
            }
        )
    response = http.post(
        f"/api/tasks/{task_id}/annotations/",
        json={"result": result, "lead_time": 4.2, "was_cancelled": was_cancelled},
    )
    assert response.status_code == 201, response.text
    annotation_id: int = response.json()["id"]
    return annotation_id


@pytest.mark.services
def test_the_labeler_is_an_async_labeler_named_label_studio(labeler: LabelStudioLabeler) -> None:
    assert isinstance(labeler, AsyncLabeler)
    assert labeler.name == "label-studio"
    assert labeler.max_cost(_requests("t")[0]) == PRICE


@pytest.mark.services
def test_the_project_is_created_once_and_reused_by_its_title(
    label_studio: LabelStudioServer,
    labeler: LabelStudioLabeler,
    project_title: str,
    sdk: LabelStudioBase,
) -> None:
    first = labeler.project_id()
    with LabelStudioLabeler(
        url=label_studio.url,
        api_key=label_studio.token,
        project_title=project_title,
        price_per_label=PRICE,
    ) as again:
        assert again.project_id() == first
    project = sdk.projects.get(first)
    titled = sdk.projects.list(title=project_title).items or []
    assert [p.title for p in titled] == [project_title]
    assert project.label_config is not None
    assert project.label_config.strip() == LABEL_CONFIG.strip()


@pytest.mark.services
def test_submitted_tasks_carry_the_trace_id_question_response_p_correct_and_slice(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase
) -> None:
    assert labeler.submit(_requests("a", "b")) == 2
    data = {t.data["trace_id"]: t.data for t in _tasks(sdk, labeler.project_id())}
    assert data["a"] == {
        "trace_id": "a",
        "question": "What is 0?",
        "reference": "0",
        "response": "The answer is \\boxed{0}.",
        "p_correct": "hidden (so it does not anchor your verdict)",
        "slice": "math/easy",
    }
    assert data["b"]["question"] == PROMPT_NOT_STORED
    assert data["b"]["reference"] == "(no reference answer)"
    # Every task carries the estimator's P(correct) as a prediction score (the Data
    # Manager sorts by it), with the model version; annotators are not shown predictions.
    project = sdk.projects.get(id=labeler.project_id())
    assert project.show_collab_predictions is False
    assert project.show_instruction is True
    tasks = sdk.tasks.list(project=labeler.project_id(), fields="all", page_size=100)
    scores = {t.data["trace_id"]: t.predictions for t in tasks.items or []}
    (a_prediction,) = scores["a"]
    as_dict = a_prediction if isinstance(a_prediction, dict) else a_prediction.dict()
    assert as_dict["score"] == pytest.approx(0.5)
    assert as_dict["model_version"] == "entropy-sentinel"
    assert as_dict["result"] == []  # nothing Label Studio could pre-fill as the verdict
    (b_prediction,) = scores["b"]
    b_dict = b_prediction if isinstance(b_prediction, dict) else b_prediction.dict()
    assert b_dict["score"] == pytest.approx(0.51)


def test_annotators_see_p_correct_hidden_binned_or_exact_as_the_settings_say() -> None:
    request = LabelRequest(trace_id="t", response_text="r", p_correct=0.2, reference="42")
    assert TaskData.of(request, show_p="hidden").p_correct.startswith("hidden")
    assert TaskData.of(request, show_p="binned").p_correct == "low"
    assert TaskData.of(request, show_p="exact").p_correct == "0.200"
    assert TaskData.of(request).reference == "42"
    high = LabelRequest(trace_id="t", response_text="r", p_correct=0.9)
    assert TaskData.of(high, show_p="binned").p_correct == "high"


@pytest.mark.services
def test_submitting_the_same_requests_twice_creates_each_task_once(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase
) -> None:
    requests = _requests("t1", "t2", "t3")
    assert labeler.submit(requests) == 3
    assert labeler.submit(requests) == 0
    assert labeler.submit([*requests, *_requests("t4")]) == 1
    traces = Counter(t.data["trace_id"] for t in _tasks(sdk, labeler.project_id()))
    assert traces == Counter({"t1": 1, "t2": 1, "t3": 1, "t4": 1})


@pytest.mark.services
def test_a_rerun_after_a_crash_between_import_and_bookkeeping_creates_no_duplicate(
    label_studio: LabelStudioServer,
    labeler: LabelStudioLabeler,
    project_title: str,
    sdk: LabelStudioBase,
) -> None:
    requests = _requests("c1", "c2", "c3", "c4")
    project = labeler.project_id()
    # The crashed run imported the first two tasks and died before recording anything.
    sdk.projects.import_tasks(
        project,
        request=[ImportApiRequest(data=TaskData.of(r).model_dump()) for r in requests[:2]],
    )
    # The rerun is a fresh process: a new labeler that knows nothing of the first.
    with LabelStudioLabeler(
        url=label_studio.url,
        api_key=label_studio.token,
        project_title=project_title,
        price_per_label=PRICE,
    ) as rerun:
        assert rerun.submit(requests) == 2
        assert rerun.submit(requests) == 0
    traces = Counter(t.data["trace_id"] for t in _tasks(sdk, project))
    assert traces == Counter({"c1": 1, "c2": 1, "c3": 1, "c4": 1})


@pytest.mark.services
def test_human_annotations_are_collected_as_correct_and_incorrect_at_the_label_price(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    labeler.submit(_requests("right", "wrong", "pending"))
    project = labeler.project_id()
    right = _annotate(http, _task_id(sdk, project, "right"), choice="correct")
    wrong = _annotate(http, _task_id(sdk, project, "wrong"), choice="incorrect")
    admin = sdk.users.whoami().id

    outcomes = {o.trace_id: o for o in labeler.collect(["right", "wrong", "pending"])}

    assert sorted(outcomes) == ["right", "wrong"]
    assert outcomes["right"].correct is True
    assert outcomes["wrong"].correct is False
    assert {o.cost for o in outcomes.values()} == {PRICE}
    assert outcomes["right"].detail["annotation_id"] == right
    assert outcomes["wrong"].detail["annotation_id"] == wrong
    assert outcomes["right"].detail["task_id"] == _task_id(sdk, project, "right")
    assert outcomes["right"].detail["annotator"] == admin
    assert outcomes["right"].detail["comment"] is None


@pytest.mark.services
def test_collect_returns_only_the_trace_ids_asked_for(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    labeler.submit(_requests("x", "y"))
    project = labeler.project_id()
    for trace in ("x", "y"):
        _annotate(http, _task_id(sdk, project, trace), choice="correct")
    assert [o.trace_id for o in labeler.collect(["y", "unknown"])] == ["y"]
    assert labeler.collect([]) == []


@pytest.mark.services
def test_submit_and_collect_read_every_page_of_tasks(
    labeler: LabelStudioLabeler,
    sdk: LabelStudioBase,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(label_studio_module, "PAGE_SIZE", 2)
    traces = [f"p{i}" for i in range(5)]
    assert labeler.submit(_requests(*traces[:4])) == 4  # two full pages
    assert labeler.submit(_requests(*traces)) == 1
    project = labeler.project_id()
    for trace in traces[:4]:
        _annotate(http, _task_id(sdk, project, trace), choice="correct")
    assert [o.trace_id for o in labeler.collect(traces)] == traces[:4]


@pytest.mark.services
def test_an_annotators_comment_travels_with_the_label(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    labeler.submit(_requests("commented"))
    task = _task_id(sdk, labeler.project_id(), "commented")
    _annotate(http, task, choice="incorrect", comment="The box holds 7, not 0.")
    (outcome,) = labeler.collect(["commented"])
    assert outcome.correct is False
    assert outcome.detail["comment"] == "The box holds 7, not 0."


@pytest.mark.services
def test_a_cancelled_annotation_is_no_label(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    labeler.submit(_requests("skipped"))
    _annotate(http, _task_id(sdk, labeler.project_id(), "skipped"), choice=None, was_cancelled=True)
    assert labeler.collect(["skipped"]) == []


@pytest.mark.services
def test_the_latest_of_several_annotations_decides_the_label(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    labeler.submit(_requests("twice"))
    task = _task_id(sdk, labeler.project_id(), "twice")
    _annotate(http, task, choice="correct")
    second = _annotate(http, task, choice="incorrect", comment="on a second look")
    (outcome,) = labeler.collect(["twice"])
    assert outcome.correct is False
    assert outcome.detail["annotation_id"] == second


@pytest.mark.services
def test_an_annotation_without_a_choice_is_an_error_naming_the_task_and_what_was_expected(
    labeler: LabelStudioLabeler, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    labeler.submit(_requests("malformed"))
    task = _task_id(sdk, labeler.project_id(), "malformed")
    annotation = _annotate(http, task, choice=None, comment="forgot to choose")
    with pytest.raises(LabelingError) as caught:
        labeler.collect(["malformed"])
    message = str(caught.value)
    assert f"task {task} (trace 'malformed'), annotation {annotation}" in message
    assert "expected exactly one 'verdict' choice of 'correct' or 'incorrect'" in message
    assert "got 0 'verdict' regions" in message
    assert caught.value.retryable is False


def test_a_choice_outside_correct_and_incorrect_is_an_error() -> None:
    raw = {
        "id": 9,
        "result": [{"from_name": CHOICE_NAME, "type": "choices", "value": {"choices": ["maybe"]}}],
    }
    with pytest.raises(LabelingError, match=r"task 3 \(trace 't'\), annotation 9: expected .* "):
        parse_annotation(3, "t", raw)
    with pytest.raises(LabelingError, match="expected an annotation with an integer id"):
        parse_annotation(3, "t", {"result": "nonsense"})


@pytest.mark.services
def test_a_wrong_token_is_a_labeling_error_that_names_the_status(
    label_studio: LabelStudioServer, project_title: str
) -> None:
    with (
        LabelStudioLabeler(
            url=label_studio.url,
            api_key="not-the-token",
            project_title=project_title,
            price_per_label=PRICE,
        ) as labeler,
        pytest.raises(LabelingError, match="got HTTP 401") as caught,
    ):
        labeler.submit(_requests("t"))
    assert label_studio.url in str(caught.value)
    assert caught.value.retryable is False


def test_an_unreachable_server_is_a_retryable_labeling_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with (
            LabelStudioLabeler(
                url=url, api_key="some-token", project_title="p", price_per_label=PRICE
            ) as labeler,
            pytest.raises(LabelingError, match="connection error") as caught,
        ):
            labeler.collect(["t"])
    assert url in str(caught.value)
    assert caught.value.retryable is True


def test_from_settings_without_a_token_says_how_to_get_one() -> None:
    with pytest.raises(LabelingError, match="SENTINEL_LABEL_STUDIO_API_KEY"):
        LabelStudioLabeler.from_settings(Settings(label_studio_api_key=None))


def test_from_settings_reads_url_token_project_and_price() -> None:
    settings = Settings(
        label_studio_url="http://127.0.0.1:1/",
        label_studio_api_key=SecretStr("secret-token"),
        label_studio_project="my-project",
        label_studio_price_per_label=0.75,
    )
    with LabelStudioLabeler.from_settings(settings) as labeler:
        assert labeler.url == "http://127.0.0.1:1"
        assert labeler.project_title == "my-project"
        assert labeler.max_cost(_requests("t")[0]) == 0.75


@pytest.mark.services
def test_with_full_overlap_a_task_counts_once_two_verdicts_are_in_and_both_are_kept(
    label_studio: LabelStudioServer, project_title: str, sdk: LabelStudioBase, http: httpx.Client
) -> None:
    with LabelStudioLabeler(
        url=label_studio.url,
        api_key=label_studio.token,
        project_title=project_title,
        price_per_label=PRICE,
        overlap=1.0,
    ) as labeler:
        assert labeler.max_cost(_requests("x")[0]) == pytest.approx(2 * PRICE)
        labeler.submit(_requests("agree", "disagree"))
        project = sdk.projects.get(labeler.project_id())
        assert project.maximum_annotations == 2
        assert project.overlap_cohort_percentage == 100
        agree = _task_id(sdk, labeler.project_id(), "agree")
        disagree = _task_id(sdk, labeler.project_id(), "disagree")
        _annotate(http, agree, choice="correct")
        assert labeler.collect(["agree", "disagree"]) == []  # one verdict of two
        _annotate(http, agree, choice="correct")
        _annotate(http, disagree, choice="incorrect")
        _annotate(http, disagree, choice="correct")
        outcomes = {o.trace_id: o for o in labeler.collect(["agree", "disagree"])}
    assert outcomes["agree"].detail["choices"] == ["correct", "correct"]
    assert outcomes["disagree"].detail["choices"] == ["incorrect", "correct"]
    assert outcomes["disagree"].correct is True  # the latest verdict decides
    assert [o.cost for o in outcomes.values()] == [pytest.approx(2 * PRICE)] * 2


def test_an_overlap_share_outside_zero_and_one_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="overlap share in"):
        LabelStudioLabeler(
            url="http://127.0.0.1:9", api_key="k", project_title="t", price_per_label=0.1,
            overlap=1.5,
        )  # fmt: skip
