"""axilla-client: check a site's config and data, then run the site's SuperNode."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from client.data import load_site_data, site_summary
from client.errors import SiteDataError
from client.site_config import load_site_config
from models.run_config import RunConfig


def check_site(site_config: Path, image_size: int) -> str:
    """Validate a site config and every manifest row and image; return a readable summary."""
    config = load_site_config(site_config)
    return site_summary(load_site_data(config, image_size))


def supernode_command(args: argparse.Namespace) -> list[str]:
    """The ``flower-supernode`` command line for this site."""
    exe = shutil.which("flower-supernode") or "flower-supernode"
    cmd = [exe, "--superlink", args.superlink, "--node-config", f"site-config='{args.site.resolve()}'"]
    if args.insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(args.root_certificates)]
    if args.auth_key:
        cmd += ["--auth-supernode-private-key", str(args.auth_key), "--auth-supernode-public-key", f"{args.auth_key}.pub"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-client``."""
    parser = argparse.ArgumentParser(prog="axilla-client", description=__doc__)
    parser.add_argument("--site", type=Path, required=True, help="the site config YAML")
    parser.add_argument("--check", action="store_true", help="only check the site's config and data, and print a summary")
    parser.add_argument("--image-size", type=int, default=RunConfig().image_size, help="preprocessing size used by --check")
    parser.add_argument("--superlink", help="HOST:PORT of the study's SuperLink Fleet API")
    parser.add_argument("--root-certificates", type=Path, help="the study's root CA certificate (PEM)")
    parser.add_argument("--auth-key", type=Path, help="this site's private key (its .pub beside it) for node authentication")
    parser.add_argument("--insecure", action="store_true", help="no TLS (loopback tests only)")
    args = parser.parse_args(argv)
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
    cmd = supernode_command(args)
    print("starting:", " ".join(cmd), flush=True)
    os.execvp(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
