"""Prefect flows: they only sequence the tasks in `tasks/`.

Importing this package sets process defaults (only where the environment does not set them) that
every entry point needs before Prefect starts, whether it runs through `make` or as
`python -m flows.<name>` directly:

- the ephemeral Prefect server gets 180 s to start instead of Prefect's 20 s: on a fresh
  `PREFECT_HOME` it first creates and migrates its database, which took about 19 s on an idle
  2-core machine and timed out under a little load;
- Prefect and Ray telemetry are off (nothing can reach the outside from a cluster node anyway,
  and the failed sends logged errors);
- the library's `sumpref` logger is forwarded to the Prefect UI.
"""

import os

ENV_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "sumpref",
    "RAY_USAGE_STATS_ENABLED": "0",
}

for _key, _value in ENV_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
