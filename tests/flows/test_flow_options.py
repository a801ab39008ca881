"""The flows' own options: time limits on every flow, retries left to deployments."""

from __future__ import annotations


def test_every_flow_has_a_time_limit_and_no_retry_of_its_own() -> None:
    """Direct calls fail at once; deployed runs retry through the worker's environment."""
    from flows.acquire import acquire
    from flows.monitor import monitor
    from flows.nightly import nightly
    from flows.retrain import retrain
    from flows.settings import TIMEOUT_S

    for flow_ in (monitor, retrain, acquire, nightly):
        assert flow_.timeout_seconds == TIMEOUT_S[flow_.name]
        assert flow_.retries == 0
