"""Flower ServerApp: a thin layer over ``run_federation``."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from models.run_config import RunConfig
from server.federation import run_federation

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Parse the run config once and run the experiment."""
    run_federation(grid, RunConfig.from_mapping(context.run_config))
