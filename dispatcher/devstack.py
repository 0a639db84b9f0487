"""The file through which a running ``dispatcher dev`` is found by the other processes of its user.

While the stack runs it announces its Redis (and API) in a small JSON file at ``devstack_path()``; it
removes the file when it stops, and a file left by a stack that died (its pid no longer runs) is ignored
by readers. ``Settings.redis_choice()`` (``dispatcher.settings``) reads it when ``DISPATCHER_REDIS_URL``
is not set.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

APP_DIR = "webhook-dispatcher"
FILE_NAME = "devstack.json"


def devstack_path(configured: str | os.PathLike[str] | None = None) -> Path:
    """Where ``dispatcher dev`` announces itself: ``configured`` (``DISPATCHER_DEVSTACK_FILE``) when given,
    else ``$XDG_RUNTIME_DIR/webhook-dispatcher/devstack.json``, else ``$XDG_CACHE_HOME`` (``~/.cache``)
    in its place: per user, on this machine."""
    if configured:
        return Path(configured).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / APP_DIR / FILE_NAME
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    if not cache:
        try:
            cache = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory: a per-user directory under the temp dir
            cache = str(Path(tempfile.gettempdir()) / f"{APP_DIR}-{os.getuid()}")
    return Path(cache) / APP_DIR / FILE_NAME


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs now."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as someone else
        return True
    return True


@dataclass(frozen=True)
class DevStackInfo:
    """What a running ``dispatcher dev`` announces: its Redis, its API, its pid and when it started."""

    redis_url: str
    api_url: str
    pid: int
    started_at: float

    def alive(self) -> bool:
        return pid_alive(self.pid)


def write_devstack(path: Path, info: DevStackInfo) -> None:
    """Announce ``info`` at ``path`` (readable by this user only; replaced atomically)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".devstack-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(info), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_devstack(path: Path) -> DevStackInfo | None:
    """The stack announced at ``path``, whether or not it still runs; None when there is no readable file, or
    when another user owns it (in a shared directory, it could send this user's events to any Redis)."""
    try:
        if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        return DevStackInfo(
            redis_url=str(raw["redis_url"]),
            api_url=str(raw.get("api_url", "")),
            pid=int(raw["pid"]),
            started_at=float(raw.get("started_at", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remove_devstack(path: Path, pid: int) -> None:
    """Withdraw the announcement at ``path`` if it is still the one of process ``pid`` (another stack may
    have taken over since)."""
    info = read_devstack(path)
    if info is not None and info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def announce(path: Path, redis_url: str, api_url: str) -> DevStackInfo | None:
    """Announce this process' stack at ``path``; returns the other running stack it replaced, if any.
    Raises ``OSError`` when the file cannot be written."""
    other = read_devstack(path)
    write_devstack(path, DevStackInfo(redis_url=redis_url, api_url=api_url, pid=os.getpid(), started_at=time.time()))
    return other if other is not None and other.pid != os.getpid() and other.alive() else None
