"""Alerts that reach someone: the Prefect automations the project ships.

    PREFECT_API_URL=... .venv/bin/python -m flows.automations --webhook URL
    scripts/prefect-server automations URL      (the same, on the server started there)

Creates, on the Prefect server ``PREFECT_API_URL`` names, a webhook notification block
(``CustomWebhookNotificationBlock``, a JSON POST of ``{"subject", "body"}``) and two
automations that notify through it:

- ``sentinel: slice accuracy dropped``: on every ``sentinel.slice.accuracy-dropped``
  event the monitor flow emits (``tasks.alerts.emit_alert``), with the slice, the drop
  and the interval;
- ``sentinel: flow run failed``: on every flow run that ends Failed or Crashed.

Idempotent: run it again (a new URL, say) and the block is overwritten and each
automation replaced, by name, never duplicated. Slack, e-mail or PagerDuty: swap the
block for Prefect's block of that service; the automations stay the same.
"""

from __future__ import annotations

import argparse
import sys
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from tasks.alerts import DROP_EVENT

__all__ = ["AUTOMATIONS", "BLOCK_NAME", "install_automations"]

BLOCK_NAME = "sentinel-alerts"
DROP_AUTOMATION = "sentinel: slice accuracy dropped"
FAILED_AUTOMATION = "sentinel: flow run failed"
AUTOMATIONS = (DROP_AUTOMATION, FAILED_AUTOMATION)

_DROP_SUBJECT = (
    "Entropy Sentinel: {{ event.payload.by }} {{ event.payload.slice }} dropped to "
    "{{ event.payload.current | round(3) }}"
)
_DROP_BODY = (
    "Slice {{ event.payload.slice }} (by {{ event.payload.by }}): estimated accuracy "
    "{{ event.payload.previous | round(3) }} -> {{ event.payload.current | round(3) }}, "
    "interval {{ event.payload.current_low | round(3) }}-"
    "{{ event.payload.current_high | round(3) }} over {{ event.payload.n_current }} "
    "responses ({{ event.payload.method }}). Event {{ event.id }} at {{ event.occurred }}."
)
_FAILED_SUBJECT = "Entropy Sentinel: flow run {{ flow_run.name }} {{ flow_run.state.name }}"
_FAILED_BODY = (
    "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of flow {{ flow.name }} ended "
    "{{ flow_run.state.name }}: {{ flow_run.state.message }}"
)


def install_automations(webhook_url: str, *, block_name: str = BLOCK_NAME) -> dict[str, UUID]:
    """Save the webhook block and (re)create both automations; name -> automation id."""
    block = CustomWebhookNotificationBlock(
        name="Entropy Sentinel alerts",
        url=webhook_url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        allow_private_urls=True,  # a receiver on the operator's own network
    )
    block_id = block.save(block_name, overwrite=True)
    wanted = [
        AutomationCore(
            name=DROP_AUTOMATION,
            description="A slice's accuracy fell below its previous estimate (monitor flow).",
            trigger=EventTrigger(
                expect={DROP_EVENT},
                match={"prefect.resource.id": "sentinel.slice.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(block_document_id=block_id, subject=_DROP_SUBJECT, body=_DROP_BODY)
            ],
        ),
        AutomationCore(
            name=FAILED_AUTOMATION,
            description="A flow run of the project ended Failed or Crashed.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id, subject=_FAILED_SUBJECT, body=_FAILED_BODY
                )
            ],
        ),
    ]
    with get_client(sync_client=True) as client:
        for existing in client.read_automations():
            if existing.name in AUTOMATIONS:
                client.delete_automation(existing.id)
        return {automation.name: client.create_automation(automation) for automation in wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhook", required=True, help="URL the notifications are POSTed to")
    parser.add_argument("--block", default=BLOCK_NAME, help="name of the notification block")
    args = parser.parse_args(argv)
    created = install_automations(args.webhook, block_name=args.block)
    for name, automation_id in created.items():
        print(f"automation {name!r}: {automation_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
