"""Flower ServerApp: a thin layer over ``run_federation``."""

from __future__ import annotations

import logging

from flwr.app import Context
from server.flower_compat import FLOWER_LOGGER
from flwr.serverapp import Grid, ServerApp

from models.run_config import RunConfig
from server.federation import run_federation

app = ServerApp()


def log_through_flower() -> None:
    """Send axilla's log records to Flower's handlers, so they reach ``flwr run --stream`` and ``flwr log``.

    Left alone when the caller already gave the ``axilla`` logger a handler (``axilla-simulate``).
    """
    axilla = logging.getLogger("axilla")
    if axilla.handlers:
        return
    for handler in FLOWER_LOGGER.handlers:
        if handler not in axilla.handlers:
            axilla.addHandler(handler)
    axilla.setLevel(logging.INFO)
    axilla.propagate = False


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Parse the run config once and run the experiment."""
    log_through_flower()
    run_federation(grid, RunConfig.from_mapping(context.run_config))
