"""axilla-client: check a site's config and data, then run the site's SuperNode."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from client.data import load_site_data, site_summary
from client.errors import SiteDataError
from client.site_config import load_site_config
from models.run_config import RunConfig
from server.study import StudyError, generate_site_keys
from server.superlink import executable, with_own_bin_on_path

SUPERLINK_UNREACHABLE = 305  # Flower's exit code for a SuperNode that cannot activate at the SuperLink
FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")


def check_site(site_config: Path, image_size: int) -> str:
    """Validate a site config and every manifest row and image; return a readable summary."""
    config = load_site_config(site_config)
    return site_summary(load_site_data(config, image_size))


def supernode_command(args: argparse.Namespace) -> list[str]:
    """The ``flower-supernode`` command line for this site."""
    cmd = [executable("flower-supernode"), "--superlink", args.superlink, "--node-config", f"site-config='{args.site.resolve()}'", "--port", str(args.local_port)]
    if args.insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(args.root_certificates)]
    if args.auth_key:
        cmd += ["--auth-supernode-private-key", str(args.auth_key)]
    return cmd


def generate_key(path: Path) -> int:
    """Write this site's key pair; the public half is what the coordinator enrols."""
    try:
        public = generate_site_keys(path)
    except StudyError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (keep it here) and {public}; send {public.name} to the study coordinator for `axilla-study add-site`")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-client``."""
    parser = argparse.ArgumentParser(prog="axilla-client", description=__doc__)
    parser.add_argument("--site", type=Path, help="the site config YAML")
    parser.add_argument("--generate-key", type=Path, metavar="PATH", help="only write a new key pair for this site (PATH and PATH.pub)")
    parser.add_argument("--check", action="store_true", help="only check the site's config and data, and print a summary")
    parser.add_argument("--image-size", type=int, default=RunConfig().image_size, help="preprocessing size used by --check")
    parser.add_argument("--superlink", help="HOST:PORT of the study's SuperLink Fleet API")
    parser.add_argument("--root-certificates", type=Path, help="the study's root CA certificate (PEM)")
    parser.add_argument("--auth-key", type=Path, help="this site's private key (OpenSSH EC) enrolled by the coordinator")
    parser.add_argument("--local-port", type=int, default=9094, help="the SuperNode's local Runtime API port (loopback; one per site on a machine)")
    parser.add_argument("--insecure", action="store_true", help="no TLS and no authentication (local experiments only)")
    args = parser.parse_args(argv)
    if args.generate_key:
        return generate_key(args.generate_key)
    if args.site is None:
        parser.error("--site is required")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(check_site(args.site, args.image_size))
    except SiteDataError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 1
    if args.check:
        return 0
    if not args.superlink:
        parser.error("--superlink HOST:PORT is required unless --check is given")
    if not args.insecure and not args.root_certificates:
        parser.error("--root-certificates is required (or --insecure for loopback tests)")
    signal.signal(signal.SIGTERM, _terminate)
    return run_supernode(supernode_command(args))


def _terminate(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit so the SuperNode is stopped on the way out."""
    raise SystemExit(128 + signum)


def run_supernode(cmd: list[str], max_delay: float = 60.0) -> int:
    """Run the SuperNode; start it again (with back-off) when the SuperLink refuses or cannot be reached.

    A site that is not enrolled yet, or a SuperLink that is restarting, makes Flower's SuperNode
    stop with its exit code 305 (printed; the process itself exits with 1); the site keeps trying,
    so enrolment order and coordinator restarts need no one at the hospital. Other failures (bad
    key, bad flags) end the client.
    """
    delay = 2.0
    while True:
        print("starting:", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=os.environ | {"PATH": with_own_bin_on_path()})
        codes: list[int] = []
        # A reader thread: the SuperNode's SuperExec child may hold the pipe a little after the SuperNode exits.
        reader = threading.Thread(target=_relay, args=(proc, codes), daemon=True)
        reader.start()
        try:
            code = proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        reader.join(5)
        if SUPERLINK_UNREACHABLE not in codes:
            return code
        print(f"axilla-client: the SuperLink refused this site or is unreachable (Flower exit code {SUPERLINK_UNREACHABLE}); retrying in {delay:.0f} s", flush=True)
        time.sleep(delay)
        delay = min(2 * delay, max_delay)


def _relay(proc: subprocess.Popen[str], codes: list[int]) -> None:
    """Copy the SuperNode's output to ours, noting Flower exit codes it reports."""
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if match := FLOWER_EXIT.search(line):
            codes.append(int(match.group(1)))


if __name__ == "__main__":
    sys.exit(main())
