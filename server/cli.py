"""axilla-server: start the study's SuperLink, to which ``flwr run`` submits experiments."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def superlink_command(args: argparse.Namespace) -> list[str]:
    """The ``flower-superlink`` command line."""
    exe = shutil.which("flower-superlink") or "flower-superlink"
    cmd = [exe, "--fleet-api-address", args.fleet_address, "--control-api-address", args.control_address]
    if args.insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(args.ca_cert), "--ssl-certfile", str(args.cert), "--ssl-keyfile", str(args.key)]
    if args.database:
        cmd += ["--database", str(args.database)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-server``."""
    parser = argparse.ArgumentParser(prog="axilla-server", description=__doc__)
    parser.add_argument("--fleet-address", default="0.0.0.0:9092", help="where site SuperNodes connect")
    parser.add_argument("--control-address", default="127.0.0.1:9093", help="where `flwr run` submits experiments")
    parser.add_argument("--ca-cert", type=Path, help="the study's root CA certificate (PEM)")
    parser.add_argument("--cert", type=Path, help="the server certificate (PEM)")
    parser.add_argument("--key", type=Path, help="the server private key (PEM)")
    parser.add_argument("--database", type=Path, help="SuperLink state database (default: in memory)")
    parser.add_argument("--insecure", action="store_true", help="no TLS (loopback tests only)")
    args = parser.parse_args(argv)
    if not args.insecure and not (args.ca_cert and args.cert and args.key):
        parser.error("--ca-cert, --cert and --key are required (or --insecure for loopback tests)")
    cmd = superlink_command(args)
    print("starting:", " ".join(cmd), flush=True)
    os.execvp(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
