"""axilla-study: create a study's certificates and enrol or withdraw hospitals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.messages import SITE_ROLES
from server.study import Study, StudyError, add_site, enrolled_roles, enrolled_sites, import_tls, init_study, issue_server_cert, remove_site, set_role


def _instructions(study: Study, site: str, outbox: Path, superlink: str) -> str:
    """What the coordinator sends to a hospital, and the command the hospital runs."""
    key = outbox / f"{site}.key"
    lines = [f"send to {site}: {outbox}/ (ca.crt" + (f", {key.name} and {key.name}.pub" if key.exists() else "") + ")"]
    if key.exists():
        lines.append(f"  {key.name} is that hospital's private key: send it over a secure channel and delete it here afterwards")
    lines.append("the hospital runs:")
    lines.append(
        f"  axilla-client --site site_configs/{site}.yaml --superlink {superlink} "
        f"--root-certificates ca.crt --auth-key {key.name if key.exists() else '<its private key>'}"
    )
    return "\n".join(lines)


def _with_loopback(hosts: list[str]) -> list[str]:
    """The given hosts, then localhost and 127.0.0.1 (the coordinator's own ``flwr`` calls use them)."""
    return hosts + [h for h in ("localhost", "127.0.0.1") if h not in hosts]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-study``."""
    parser = argparse.ArgumentParser(prog="axilla-study", description=__doc__)
    parser.add_argument("--study", type=Path, required=True, help="the study directory")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the study CA and the SuperLink certificate")
    init.add_argument("--host", action="append", default=[], help="a name or IP hospitals use to reach the SuperLink (repeatable)")
    init.add_argument("--days", type=int, default=825, help="certificate validity")
    imp = sub.add_parser("import-tls", help="take existing TLS material (an institution's CA and server certificate) instead of init")
    imp.add_argument("--ca-cert", type=Path, required=True)
    imp.add_argument("--server-cert", type=Path, required=True, help="must be valid for the names hospitals use and for 127.0.0.1")
    imp.add_argument("--server-key", type=Path, required=True)
    cert = sub.add_parser("server-cert", help="reissue the SuperLink certificate (e.g. for a new host name)")
    cert.add_argument("--host", action="append", default=[], help="a name or IP (repeatable)")
    add = sub.add_parser("add-site", help="enrol a hospital: issue its key pair, or take its public key")
    add.add_argument("site", help="the site's name (as in its site config)")
    add.add_argument(
        "--role", required=True, choices=SITE_ROLES,
        help="train: trains the models; external: a test site that only evaluates. The server refuses a node claiming another",
    )  # fmt: skip
    add.add_argument("--public-key", type=Path, help="the hospital's own OpenSSH EC public key (its private key never leaves it)")
    add.add_argument("--superlink", default="<coordinator-host>:9092", help="address printed in the hospital's command")
    role = sub.add_parser("set-role", help="change an enrolled hospital's role (from the next run)")
    role.add_argument("site")
    role.add_argument("--role", required=True, choices=SITE_ROLES)
    rm = sub.add_parser("remove-site", help="withdraw a hospital (refused from the SuperLink's next start)")
    rm.add_argument("site")
    sub.add_parser("list", help="list enrolled sites")
    args = parser.parse_args(argv)
    study = Study(args.study.resolve())
    try:
        if args.command == "init":
            init_study(study.root, _with_loopback(args.host), days=args.days)
            print(f"study created in {study.root}; send {study.ca_cert} to every hospital")
            if not args.host:
                print("note: no --host given, so hospitals can reach this SuperLink only as localhost (loopback tests)")
        elif args.command == "import-tls":
            import_tls(study.root, args.ca_cert, args.server_cert, args.server_key)
            print(f"study created in {study.root} with the given TLS material; send {study.ca_cert} to every hospital")
        elif args.command == "server-cert":
            study.check()
            issue_server_cert(study, _with_loopback(args.host))
            print(f"reissued {study.server_cert}")
        elif args.command == "add-site":
            outbox = add_site(study, args.site, args.role, args.public_key)
            print(_instructions(study, args.site, outbox, args.superlink))
        elif args.command == "set-role":
            set_role(study, args.site, args.role)
            print(f"{args.site} is now enrolled as {args.role}; the server holds its handshake to that from the next run")
        elif args.command == "remove-site":
            remove_site(study, args.site)
            print(f"withdrew {args.site}; the SuperLink refuses its key from its next start")
        else:
            roles = enrolled_roles(study)
            for site, key in enrolled_sites(study).items():
                print(f"{site}\t{roles[site]}\t{key.decode()[:60]}...")
    except StudyError as err:
        print(f"axilla-study: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
