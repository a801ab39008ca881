"""``sentinel campaign plan|run|receive|status``: labeling campaigns under a budget.

A plan ranks the slices by the champion's estimates, allocates the labels the
budget buys and picks the responses (``sentinel_core.acquisition``); it is
stored with its budget in the trace store. ``run`` spends that budget through
one labeler (the ledger reserves before each action and commits with the
label), and can be rerun after a crash. ``receive`` takes Label Studio's annotations
by webhook as they are made (``run`` polling stays the fallback). ``status`` shows
spent, reserved and labelled, per slice, and the annotators' agreement.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.base import check_budget, engine_of, out, progress_bar, settings_of
from flows.cli.model import scored_slices
from labeling.campaign import LabelerKind, default_cost_per_label, make_labeler
from sentinel_core.acquisition import Design, Unit
from sentinel_core.errors import require_extra

campaign_app = typer.Typer(
    help="Labeling campaigns: plan under a budget, run with a labeler, show status.",
    no_args_is_help=True,
)

LabelerOption = Annotated[LabelerKind, typer.Option(help="The kind of labeler.")]


@campaign_app.command("plan")
def plan_command(
    ctx: typer.Context,
    budget: Annotated[float, typer.Option(help="Budget, in --unit (> 0).")],
    by: Annotated[str, typer.Option(help="Metadata key that defines the slices.")],
    labeler: LabelerOption = "exact",
    unit: Annotated[Unit, typer.Option(help="The budget's unit.")] = "labels",
    cost_per_label: Annotated[
        float | None,
        typer.Option(min=0.0, help="USD per label for planning (default: from the labeler)."),
    ] = None,
    design: Annotated[
        Design | None,
        typer.Option(
            help="active: audit share over every slice, then the slices whose intervals "
            "labels narrow most, uncertainty sampling inside, labels weighted in the "
            "estimate; priority: the weakest slices, "
            "stratified. Default from settings (active)."
        ),
    ] = None,
    max_slices: Annotated[
        int | None,
        typer.Option(
            min=1, help="priority design: label at most this many slices (default 3, settings)."
        ),
    ] = None,
    min_per_slice: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="priority design: labels per chosen slice, at least, where affordable "
            "(default 5, settings).",
        ),
    ] = None,
    budget_name: Annotated[
        str | None,
        typer.Option(help="Draw on this named budget (shared by campaigns); default: own."),
    ] = None,
    campaign_id: Annotated[str | None, typer.Option("--id", help="Campaign id.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with the plan as JSON.")] = False,
) -> None:
    """Rank slices by estimated accuracy and pick the responses a budget buys."""
    from labeling.campaign import plan_campaign

    check_budget(budget)
    settings = settings_of(ctx, db)
    frame, probs, estimates, _served = scored_slices(settings, by=by, use_labels=True)
    cost = default_cost_per_label(settings, labeler) if cost_per_label is None else cost_per_label
    cid, plan = plan_campaign(
        engine_of(settings, create=False),
        estimates=estimates,
        trace_ids=frame["trace_id"].to_numpy(),
        slices=frame["slice"].to_numpy(),
        p_correct=probs,
        by=by,
        labeler=labeler,
        budget=budget,
        unit=unit,
        cost_per_label=cost,
        budget_name=budget_name,
        campaign_id=campaign_id,
        max_slices=settings.campaign.max_slices if max_slices is None else max_slices,
        min_per_slice=(settings.campaign.min_per_slice if min_per_slice is None else min_per_slice),
        seed=settings.seed,
        design=settings.campaign.design if design is None else design,
        audit_share=settings.campaign.audit_share,
    )
    for line in plan.summary_lines():
        out.print(line, highlight=False)
    out.print(f"campaign {cid} (run it: sentinel campaign run {cid} --labeler {labeler})")
    if as_json:
        out.print(json.dumps({"id": cid, **plan.to_dict()}), soft_wrap=True)


@campaign_app.command("run")
def run_command(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="The campaign id printed by plan.")],
    labeler: LabelerOption = "exact",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Act on at most this many items now.")
    ] = None,
    wait: Annotated[
        float,
        typer.Option(min=0.0, help="label-studio: keep polling for annotations this many s."),
    ] = 0.0,
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with the report as JSON.")] = False,
) -> None:
    """Spend the campaign's budget with a labeler; rerun to resume after a stop or crash."""
    from labeling.campaign import run_campaign
    from sentinel_core.ledger import load_campaign

    settings = settings_of(ctx, db)
    engine = engine_of(settings, create=False)
    state = load_campaign(engine, campaign_id)
    the_labeler = make_labeler(settings, labeler)
    todo = sum(
        s["planned"] + s["reserved"] + s["calling"] + s["submitted"]
        for s in state.per_slice.values()
    )
    with (
        contextlib.closing(the_labeler),  # type: ignore[type-var]
        progress_bar(f"campaign {campaign_id} ({labeler})", todo) as advance,
    ):
        report = run_campaign(
            engine,
            campaign_id,
            the_labeler,
            limit=limit,
            wait_s=wait,
            poll_s=settings.label_studio.poll_s,
            on_progress=advance,
        )
    out.print(
        f"campaign {campaign_id}: labelled {report.labelled}, failed {report.failed}, "
        f"released {report.released}, submitted {report.submitted}, waiting {report.pending}, "
        f"recovered {report.recovered}; spent now {report.spent:g}",
        highlight=False,
    )
    if report.taken:
        out.print(
            f"skipped {report.taken} items another run of {campaign_id} had reserved first "
            "(it labels them)",
            highlight=False,
        )
    if report.stopped:
        out.print(f"stopped: {report.stopped}", highlight=False)
    _print_status(load_campaign(engine, campaign_id))
    if as_json:
        out.print(json.dumps(report.to_dict()), soft_wrap=True)


@campaign_app.command("receive")
def receive_command(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the store.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65_535, help="Port (0: any free one).")] = 8093,
    public_url: Annotated[
        str | None,
        typer.Option(help="URL Label Studio reaches the receiver at (default: http://HOST:PORT)."),
    ] = None,
) -> None:
    """Receive Label Studio's annotations by webhook, storing each label as it comes.

    Registers a webhook on the settings' Label Studio project (once; reused on a
    restart) and serves until stopped (Ctrl-C). Each annotation is stored and its cost
    committed before Label Studio is answered; `campaign run` (polling) stays the
    fallback for anything missed while the receiver was down.
    """
    import signal

    from labeling.label_studio import LabelStudioLabeler
    from labeling.webhook import PATH, AnnotationReceiver

    require_extra("label-studio")
    settings = settings_of(ctx, db)
    engine = engine_of(settings, create=False)
    secret = settings.label_studio.webhook_secret
    receiver = AnnotationReceiver(
        engine,
        price_per_label=settings.label_studio.price_per_label,
        secret=None if secret is None else secret.get_secret_value(),
        host=host,
        port=port,
    )
    url = receiver.url if public_url is None else public_url.rstrip("/") + PATH
    with LabelStudioLabeler.from_settings(settings) as labeler:
        hook = labeler.register_webhook(url, secret=receiver.secret)
        project = labeler.project_id()
    # SIGTERM (a service manager's stop) ends the loop as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    out.print(
        f"receiving Label Studio annotations at {url} (webhook {hook} on project {project}); "
        "Ctrl-C to stop",
        highlight=False,
    )
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server_close()
    out.print(
        f"received {receiver.received} deliveries, settled {receiver.settled} label(s)",
        highlight=False,
    )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@campaign_app.command("status")
def status_command(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="The campaign id printed by plan.")],
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with the status as JSON.")] = False,
) -> None:
    """Spent, reserved and labelled, overall and per slice."""
    from sentinel_core.ledger import load_campaign

    state = load_campaign(engine_of(settings_of(ctx, db), create=False), campaign_id)
    _print_status(state)
    if as_json:
        b, a = state.budget, state.agreement
        payload = {
            "id": state.id,
            "labeler": state.labeler,
            "budget": {
                "name": b.name,
                "unit": b.unit,
                "total": b.total,
                "reserved": b.reserved,
                "spent": b.committed,
            },
            "slices": state.per_slice,
            "agreement": {
                "n_tasks": a.n_tasks,
                "n_agree": a.n_agree,
                "share": None if a.n_tasks == 0 else a.share,
                "kappa": None if math.isnan(a.kappa) else a.kappa,
            },
        }
        out.print(json.dumps(payload), soft_wrap=True)


def _print_status(state: Any) -> None:
    b = state.budget
    out.print(
        f"budget {b.name!r}: spent {b.committed:g} + reserved {b.reserved:g} of {b.total:g} "
        f"{b.unit} (all campaigns on it); labeler {state.labeler or 'not chosen yet'}",
        highlight=False,
    )
    table = Table(title=f"campaign {state.id} by {state.by}")
    columns = ("slice", "planned", "reserved", "waiting", "labelled", "correct", "failed", "spent")
    for column in columns:
        table.add_column(column, justify="left" if column == "slice" else "right")
    for name, c in state.per_slice.items():
        table.add_row(
            name,
            str(int(c["planned"])),
            str(int(c["reserved"] + c["calling"])),
            str(int(c["submitted"])),
            str(int(c["labelled"])),
            str(int(c["correct"])),
            str(int(c["failed"])),
            f"{c['spent']:g}",
        )
    out.print(table)
    a = state.agreement
    if a.n_tasks:
        kappa = "undefined (one verdict only)" if math.isnan(a.kappa) else f"{a.kappa:.2f}"
        out.print(
            f"agreement: {a.n_agree} of {a.n_tasks} responses labelled twice got the same "
            f"verdict ({a.share:.0%}); Cohen's kappa {kappa}",
            highlight=False,
        )
