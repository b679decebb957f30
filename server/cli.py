"""axilla-server: run one experiment of a study on its SuperLink (TLS, enrolled sites only) and follow it."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from models.run_config import RunConfigError, load_run_config_file, parse_assignments
from server.coordinator import CoordinatorError, run_experiment
from server.gateway import MIB, GatewayLimits
from server.study import Study, StudyError
from server.superlink import SuperLinkError, SuperLinkSettings

EXIT_STOPPED = 3  # the run stopped early (too few sites) and can be resumed


def _terminate(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit so the SuperLink is stopped on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-server``."""
    parser = argparse.ArgumentParser(prog="axilla-server", description=__doc__)
    parser.add_argument("--study", type=Path, required=True, help="the study directory made by `axilla-study init`")
    parser.add_argument("--host", default="0.0.0.0", help="interface the SuperLink listens on (default: all)")
    parser.add_argument("--port", type=int, default=9092, help="the port hospitals connect to (TLS, Fleet API only; default: 9092)")
    parser.add_argument("--internal-port", type=int, default=9093, help="the SuperLink's own port, on loopback only (default: 9093)")
    parser.add_argument("--run-config", type=Path, help="a TOML file of run config keys (e.g. experiments/quick.toml)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help="override one run config key")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories are written (default: ./runs)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run from its last complete round")
    parser.add_argument("--app", type=Path, help="the axilla Flower App folder (default: this installation's source tree)")
    limits = GatewayLimits()
    gateway = parser.add_argument_group("the public gateway's limits")
    gateway.add_argument("--max-body-mb", type=float, help="request body cap in MiB (default: twice the run's models, plus 4 MiB)")
    gateway.add_argument(
        "--request-timeout", type=float, default=limits.request_timeout,
        help=f"seconds a hospital's request may take to arrive, headers and then body (default: {limits.request_timeout:.0f})",
    )  # fmt: skip
    gateway.add_argument(
        "--upstream-timeout", type=float, default=limits.upstream_timeout,
        help=f"seconds the gateway waits for the SuperLink per request (default: {limits.upstream_timeout:.0f})",
    )  # fmt: skip
    gateway.add_argument("--max-connections", type=int, default=limits.max_connections, help=f"connections served at once (default: {limits.max_connections})")
    args = parser.parse_args(argv)
    try:
        limits = GatewayLimits(
            round(args.max_body_mb * MIB) if args.max_body_mb is not None else limits.max_body_bytes,
            args.request_timeout, limits.upstream_connect_timeout, args.upstream_timeout, args.max_connections,
        )  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    signal.signal(signal.SIGTERM, _terminate)
    try:
        overrides = load_run_config_file(args.run_config) if args.run_config else {}
        overrides |= parse_assignments(args.assignments)
        settings = SuperLinkSettings(Study(args.study.resolve()), args.host, args.port, args.internal_port, limits)
        cap = limits.max_body_bytes if args.max_body_mb is not None else None
        outcome = run_experiment(settings, overrides, args.runs_dir, args.resume, args.app, cap)
    except (RunConfigError, StudyError, SuperLinkError, CoordinatorError) as err:
        print(f"axilla-server: {err}", file=sys.stderr)
        return 2
    print(f"axilla-server: {outcome.message}", file=sys.stderr if outcome.status != "completed" else sys.stdout)
    if outcome.status == "stopped" and (outcome.run_dir / "checkpoints" / "round-000.pt").exists():
        print(f"axilla-server: continue it with: axilla-server --study {args.study} --resume {outcome.run_dir}", file=sys.stderr)
    print(outcome.run_dir)
    return {"completed": 0, "stopped": EXIT_STOPPED}.get(outcome.status, 1)


if __name__ == "__main__":
    sys.exit(main())
