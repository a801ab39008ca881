"""Prefect flows of the nightly loop and the ``sentinel`` command line.

Prefect's ephemeral mode (the single-command default) gives its temporary server
20 s to start. On a loaded 2-core machine it has needed more (a CI run and two
simulated months at once timed out), so unless the environment says otherwise it
gets 120 s here, before Prefect reads its settings.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
