"""axilla-client: check a site's config and data, then run the site's worker, ClientApp launcher and SuperNode.

The site worker (``python -m client.worker``) is a long-lived process that imports torch and MONAI
once and keeps data and models in memory; the ClientApp process Flower starts for each message
forwards the message to it over a private Unix socket (node config key ``site-worker``), and does
the work itself while the worker is unreachable. The ClientApp launcher
(``python -m client.clientapp_launcher``) has Flower's runtime imported and forks each message's
ClientApp process from it, so a message no longer waits for Flower's imports. Both log to
``<output_dir>/logs/`` (``worker.log``, ``launcher.log``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from client.clinical import clinical_columns
from client.data import check_site_data, site_summary
from client.errors import SiteDataError
from client.inventory import site_inventory
from client.site_config import load_site_config
from client.site_processes import ClientAppLauncher, SiteProcess, SiteWorker, WorkerStartError
from client.worker_link import default_socket_path, socket_path_for
from models.run_config import RunConfig
from server.study import StudyError, generate_site_keys
from server.superlink import executable, with_own_bin_on_path

SUPERLINK_UNREACHABLE = 305  # Flower's exit code for a SuperNode that cannot activate at the SuperLink
FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")


def check_site(site_config: Path, image_size: int) -> tuple[str, int]:
    """Validate a site config and every manifest row and image; return a readable summary and the number of unreadable files.

    Config, manifest and split errors raise ``SiteDataError``; unreadable images, masks, cine loops, micrographs and mammograms are
    all listed in the summary (every loop is decoded into the site cache, with its frame count and frame time summarised; every
    case's pathology patches and mammography views are prepared at the default sizes, with their counts summarised).
    """
    from client.cine_data import check_loops
    from client.multimodal_data import check_modalities
    from models.task import ModalInputs

    config = load_site_config(site_config)
    data, unreadable = check_site_data(config, image_size)
    cases = [c for split in data.splits.values() for c in split.cases] + [u.case for u in unreadable]
    clinical = clinical_columns(sorted(cases, key=lambda c: c.row), config.data.clinical, config.data.manifest)
    loop_lines, bad_loops = check_loops(config, image_size)
    defaults = RunConfig()
    modal = ModalInputs(("pathology", "mammography", "radiomics"), defaults.pathology_size, defaults.pathology_patches, mammo_size=defaults.mammo_size)
    modal_lines, bad_modalities = check_modalities(config, modal)
    unreadable = [*unreadable, *bad_loops, *bad_modalities]
    return site_summary(data, unreadable, site_inventory(cases), [*loop_lines, *modal_lines, *clinical.summary_lines()]), len(unreadable)


class NodeConfigError(ValueError):
    """A path that Flower's ``--node-config`` parser cannot carry."""


def _toml_string(key: str, path: Path) -> str:
    """``key='path'`` (a TOML literal string), or ``key="path"`` when the path holds a single quote.

    Flower's parser cuts a value at its closing quote and knows no escapes for it, so a path
    holding both quote characters, or a line break, cannot be passed and is refused by name.
    """
    text = str(path)
    if "\n" in text or "\r" in text or ("'" in text and '"' in text):
        raise NodeConfigError(f"{key}: the path {text!r} holds both quote characters or a line break, which Flower's --node-config cannot carry; move it")
    if "'" not in text:
        return f"{key}='{text}'"
    return f'{key}="{text.replace(chr(92), chr(92) * 2)}"'


def node_config(site: Path, worker_socket: Path | None = None) -> str:
    """The SuperNode's ``--node-config``: the site config and, when a worker runs, its socket (TOML strings)."""
    entries = [_toml_string("site-config", site.resolve())]
    if worker_socket is not None:
        entries.append(_toml_string("site-worker", worker_socket))
    return " ".join(entries)


def supernode_command(args: argparse.Namespace, worker_socket: Path | None = None) -> list[str]:
    """The ``flower-supernode`` command line for this site."""
    cmd = [executable("flower-supernode"), "--superlink", args.superlink, "--node-config", node_config(args.site, worker_socket), "--port", str(args.local_port)]
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
    parser.add_argument(
        "--no-worker", action="store_true",
        help="no site worker: every message is worked on in the ClientApp process Flower starts for it, which "
        "imports torch and MONAI and loads the data each time (slower; the behaviour before the worker existed)",
    )  # fmt: skip
    parser.add_argument(
        "--no-launcher", action="store_true",
        help="no ClientApp launcher: the SuperNode starts Flower's own flwr-clientapp for every message, which "
        "imports Flower's runtime each time (about 1 to 2.5 s more per message on a 2-core machine)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.generate_key:
        return generate_key(args.generate_key)
    if args.site is None:
        parser.error("--site is required")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary, unreadable = check_site(args.site, args.image_size)
    except SiteDataError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 1
    print(summary)
    if unreadable:
        print(f"axilla-client: {unreadable} unreadable file(s) (listed above); the site cannot train until they are fixed", file=sys.stderr)
        return 1
    if args.check:
        return 0
    if not args.superlink:
        parser.error("--superlink HOST:PORT is required unless --check is given")
    if not args.insecure and not args.root_certificates:
        parser.error("--root-certificates is required (or --insecure for loopback tests)")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_site(args)
    except NodeConfigError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 2


def _terminate(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so the SuperNode (and the worker) are stopped on the way out."""
    raise SystemExit(128 + signum)


def run_site(args: argparse.Namespace) -> int:
    """Start the ClientApp launcher and the site worker (unless turned off), wait until they answer, then run the SuperNode; stop all on the way out."""
    output_dir = load_site_config(args.site).output_dir
    socket_path = socket_path_for(output_dir)
    temp_dir = socket_path.parent if socket_path != default_socket_path(output_dir) else None  # the short fallback folder is ours to remove
    processes: list[SiteProcess] = []
    launcher = None
    if not args.no_launcher:
        launcher = ClientAppLauncher(socket_path.with_name("launcher.sock"), socket_path.parent / "bin", output_dir / "logs" / "launcher.log")
        processes.append(launcher)
    worker = None
    if not args.no_worker:
        worker = SiteWorker(args.site.resolve(), socket_path, output_dir / "logs" / "worker.log")
        processes.append(worker)

    def terminate(signum: int, frame: FrameType | None) -> None:
        for proc in processes:
            proc.stopping.set()  # before anything else, so a process dying of the same signal is not restarted
        _terminate(signum, frame)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        for proc in processes:
            proc.stopping.set()  # Ctrl-C reaches them too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, interrupt)
    command = supernode_command(args, worker.socket_path if worker else None)  # a path Flower cannot carry is refused before anything starts
    with ExitStack() as stack:
        if temp_dir is not None:
            stack.callback(shutil.rmtree, temp_dir, ignore_errors=True)
        try:
            for proc in processes:
                stack.callback(proc.stop)
                print(f"starting the {proc.label} (log: {proc.log_path})", flush=True)
                proc.start()
                print(f"{proc.label} ready (pid {proc.pid}, socket {proc.socket_path})", flush=True)
        except WorkerStartError as err:
            print(f"axilla-client: {err}\n(axilla-client --no-worker / --no-launcher run without them)", file=sys.stderr)
            return 1
        env = {}
        if launcher is not None:
            launcher.install_shim()
            env = launcher.supernode_env()
        return run_supernode(command, env=env)
    return 1  # unreachable: the with block returns


def run_supernode(cmd: list[str], max_delay: float = 60.0, env: dict[str, str] | None = None) -> int:
    """Run the SuperNode; start it again (with back-off) when the SuperLink refuses or cannot be reached.

    A site that is not enrolled yet, or a SuperLink that is restarting, makes Flower's SuperNode
    stop with its exit code 305 (printed; the process itself exits with 1); the site keeps trying,
    so enrolment order and coordinator restarts need no one at the hospital. Other failures (bad
    key, bad flags) end the client.
    """
    delay = 2.0
    while True:
        print("starting:", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=os.environ | {"PATH": with_own_bin_on_path()} | (env or {}))
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
