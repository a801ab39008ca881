"""The receiver of Label Studio's webhooks: annotations pushed, stored, then acknowledged.

``sentinel campaign receive`` serves it: Label Studio POSTs each new or updated
annotation (with its task) to ``http://HOST:PORT/label-studio``; the receiver turns it
into a label (``label_studio.outcome_from_webhook``), stores it and commits its cost on
every campaign item waiting for it (``campaign.settle_pushed``, the same ledger
transaction as a polled label), and only then answers 200. Anything else answers
without storing: 401 for a wrong or missing secret (when one is set), 400 for a body
that is not Label Studio's, 404 for another path, 500 when the store fails (Label
Studio logs it; the campaign's poll, kept as the fallback, collects the label later).
A repeated delivery, or a label the poll already took, settles nothing twice.

The standard library's threaded HTTP server: one short transaction per request, and
Label Studio waits at most ``WEBHOOK_TIMEOUT`` (1 s by default) for the answer.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine

from labeling.base import LabelingError
from labeling.campaign import settle_pushed
from labeling.label_studio import LABELER, WEBHOOK_SECRET_HEADER, outcome_from_webhook

log = logging.getLogger(__name__)

PATH = "/label-studio"
#: Largest body accepted (a task with a long response and its annotation is far less).
MAX_BODY = 10 * 1024 * 1024


class AnnotationReceiver(ThreadingHTTPServer):
    """An HTTP server that settles the labels Label Studio pushes (module docstring)."""

    daemon_threads = True

    def __init__(
        self,
        engine: Engine,
        *,
        price_per_label: float,
        secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.engine = engine
        self.price_per_label = price_per_label
        self.secret = secret
        self.received = 0
        self.settled = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The URL to give Label Studio (``http://host:port/label-studio``)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    def handle_payload(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """Settle the label of one delivery; the HTTP status and the JSON answer."""
        try:
            outcome, why = outcome_from_webhook(payload, price_per_label=self.price_per_label)
        except LabelingError as exc:
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        settled = 0 if outcome is None else settle_pushed(self.engine, outcome, labeler=LABELER)
        with self._lock:
            self.received += 1
            self.settled += settled
        log.info("label-studio webhook: %s; %d campaign item(s) settled", why, settled)
        return HTTPStatus.OK, {"settled": settled, "detail": why}


class _Handler(BaseHTTPRequestHandler):
    server: AnnotationReceiver

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != PATH:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"expected POST {PATH}"})
            return
        secret = self.server.secret
        given = self.headers.get(WEBHOOK_SECRET_HEADER, "")
        if secret is not None and not hmac.compare_digest(given.encode(), secret.encode()):
            self._answer(
                HTTPStatus.UNAUTHORIZED,
                {"error": f"expected the shared secret in {WEBHOOK_SECRET_HEADER}"},
            )
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._answer(
                HTTPStatus.BAD_REQUEST,
                {"error": f"expected a JSON body of 1 to {MAX_BODY} bytes, got length {length}"},
            )
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": f"expected JSON, got: {exc}"})
            return
        try:
            status, answer = self.server.handle_payload(payload)
        except Exception as exc:  # the store failed: not stored, so not acknowledged
            log.exception("label-studio webhook: the label could not be stored")
            self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(exc).__name__})
            return
        self._answer(status, answer)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("label-studio webhook: " + format, *args)
