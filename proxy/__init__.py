"""An OpenAI-compatible logging proxy: traces with top-20 logprobs, without touching the app.

``sentinel proxy --upstream URL`` serves :func:`proxy.app.create_app` on 127.0.0.1; an
application changes only its base URL. :mod:`proxy.wire` holds the pure parts,
:mod:`proxy.writer` the queue and the writer thread, :mod:`proxy.metrics` ``/metrics``.
"""
