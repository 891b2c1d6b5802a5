"""Prefect flows. Importing this package points Prefect at the project (PREFECT_HOME) and turns
telemetry off, so it must be imported before `prefect` itself."""

from rnnpipe import settings

settings.apply_environment()

import logging  # noqa: E402
import os  # noqa: E402

# Prefect attaches its handlers to the extra loggers (PREFECT_LOGGING_EXTRA_LOGGERS=rnnpipe)
# but leaves their level at the root's WARNING; the per-epoch lines are INFO (rnnpipe -q: WARNING)
logging.getLogger("rnnpipe").setLevel(os.environ.get("RNNPIPE_LOG_LEVEL", "INFO"))
