"""Unix sockets that only this site's user can reach: a private 0700 folder, a 0600 socket, no stale file.

Standard library only: the ClientApp launcher imports it before it forks Flower's ClientApp
processes, so it must pull in nothing else of axilla's.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

MAX_UNIX_PATH = 107  # bytes of an AF_UNIX path on Linux (108 with the terminating NUL)


class SocketSetupError(RuntimeError):
    """A socket cannot be bound where it was asked to (the message names the path)."""


def fits_unix_path(path: Path) -> bool:
    """Whether ``path`` is short enough to bind an AF_UNIX socket to."""
    return len(str(path).encode()) <= MAX_UNIX_PATH


def private_folder(folder: Path) -> None:
    """Create ``folder`` with mode 0700, or check that an existing one is ours and closed to others."""
    try:
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # the umask may have taken bits away; never adds any for others
        return
    except FileExistsError:
        pass
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise SocketSetupError(f"the socket's folder {folder} is not a folder")
    if info.st_uid != os.getuid():
        raise SocketSetupError(f"the socket's folder {folder} belongs to another user; give the site a folder of its own")
    if info.st_mode & 0o077:
        raise SocketSetupError(
            f"the socket's folder {folder} is open to others (mode {stat.S_IMODE(info.st_mode):o}); "
            "the site needs a folder of its own with mode 700"
        )


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a process that is gone; refuse if one still listens or the file is no socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise SocketSetupError(f"another process is already listening at {path}")


def bind_private(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` (mode 0600) inside a private folder (mode 0700)."""
    if not fits_unix_path(path):
        raise SocketSetupError(f"socket path {path} is {len(str(path).encode())} bytes, longer than the AF_UNIX limit of {MAX_UNIX_PATH}; pass a shorter path")
    private_folder(path.parent)
    remove_stale_socket(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(16)
    except BaseException:
        listener.close()
        raise
    return listener


def unlink_if_ours(path: Path, inode: int) -> None:
    """Remove the socket file unless another process has replaced it since."""
    try:
        if os.lstat(path).st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass
