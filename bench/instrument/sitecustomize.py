"""Timing probes for bench/bench_deployment.py: every Python process of a site logs its messages and work.

Active only when ``AXILLA_BENCH_TIMING`` names a file; then, in each process that inherits this
folder on PYTHONPATH (axilla-client, its SuperNode, SuperExec, every ``flwr-clientapp`` and any
site worker), it appends single JSON lines (O_APPEND) to that file:

- ``message``: a ``ClientApp.__call__`` (Flower's class, patched once ``flwr.clientapp.client_app``
  has executed): process start, when the message arrived and when the reply was ready, and when
  the import of ``client.app`` and Flower's steps (pulling the message, installing the FAB) began
  and ended;
- ``work``: one call of ``client.site.train_round`` / ``evaluate_split`` / ``evaluate_candidates``
  (patched right after ``client.site`` executes, before anyone imports names from it; other
  functions by ``AXILLA_BENCH_WORK="module:fn,fn;module:fn"``), in whatever process it runs,
  outermost calls only;
- in a ClientApp process forked by axilla's ClientApp launcher, the process start is that of the
  ``flwr-clientapp`` process Flower started (``AXILLA_CLIENTAPP_SHIM_PID``) and the marks start
  afresh at the fork (``launcher:fork``);
- ``exit``: when a process that logged a message or work, or imported axilla's ``client``, ends
  (with the marks, which now include Flower's push of the reply).

Nothing here imports axilla or Flower itself, so it never changes which code a process loads.
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

TIMING_ENV = "AXILLA_BENCH_TIMING"  # the JSON-lines file every probe appends to
SITE_ENV = "AXILLA_BENCH_SITE"  # the site a process belongs to (set by the bench per axilla-client)
# Flower's steps of a ClientApp process, timed only to show where its start-up goes (absent: no marks)
FLOWER_STEPS = ("pull_task_input", "install_from_fab", "push_message")
WORK_ENV = "AXILLA_BENCH_WORK"  # optional "module:fn,fn;module:fn" naming the work functions instead
DEFAULT_WORK = "client.site:train_round,evaluate_split,evaluate_candidates"


SHIM_PID_ENV = "AXILLA_CLIENTAPP_SHIM_PID"  # in a ClientApp process forked by axilla's launcher: the process Flower started


def process_start(pid: str = "self") -> float:
    """A process's start as a Unix time, from /proc/<pid>/stat and the boot-time clock (10 ms ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot)


class Recorder:
    """Appends one JSON line per event to the timing file; knows this process's identity."""

    def __init__(self, path: str) -> None:
        """Open nothing yet; note the process start."""
        self.path = path
        self.start = process_start()
        self.loaded = time.time()
        self.active = False  # set once this process logged a message or work
        self.marks: dict[str, float] = {}  # "<module>:start" / "<module>:end" of the hooked imports
        self.depth = threading.local()
        self.forked = False
        os.register_at_fork(after_in_child=self.after_fork)

    def after_fork(self) -> None:
        """In a ClientApp process forked by axilla's launcher: what the launcher did before is not this message's."""
        self.forked = True
        self.active = False
        self.marks.clear()
        self.marks["launcher:fork"] = time.time()

    def started(self) -> float:
        """When this message's process started: for a forked ClientApp process, the start of the process Flower launched."""
        if self.forked:
            shim = os.environ.get(SHIM_PID_ENV, "")
            try:
                return process_start(shim) if shim.isdigit() else self.marks["launcher:fork"]
            except (OSError, KeyError):
                return self.marks.get("launcher:fork", self.start)
        return self.start

    def identity(self) -> dict[str, Any]:
        """Who is writing: pid, parent, argv, site, and where axilla's client package came from."""
        client = sys.modules.get("client")
        app = sys.modules.get("client.app")
        return {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": sys.argv[:6],
            "site": os.environ.get(SITE_ENV, ""),
            "process_start": self.started(),
            "forked": self.forked,
            "client_file": getattr(client, "__file__", None),
            "client_app_file": getattr(app, "__file__", None),
        }

    def write(self, event: str, **fields: Any) -> None:
        """Append one line; a probe never breaks the process it measures."""
        try:
            line = json.dumps({"event": event, **self.identity(), **fields}, default=str) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception as err:  # noqa: BLE001
            print(f"bench instrument: cannot record {event}: {err}", file=sys.stderr)

    def at_exit(self) -> None:
        """Record when a measured process ends."""
        if self.active or "client" in sys.modules:
            self.write("exit", time=time.time(), marks=self.marks)


def message_facts(message: Any, context: Any) -> dict[str, Any]:
    """What kind of message this is, without reading its payload."""
    facts: dict[str, Any] = {}
    try:
        facts["kind"] = message.metadata.message_type
        facts["group_id"] = message.metadata.group_id
        content = message.content
        facts["arrays"] = sorted(content.array_records.keys())
        config = content.config_records.get("config")
        if config is not None:
            facts["split"] = config.get("split")
            facts["server_round"] = config.get("server-round")
            facts["candidates"] = bool(config.get("candidates"))
            facts["task"] = config.get("task")
            facts["lesion_crop"] = config.get("lesion-crop")
        facts["site_config"] = str(context.node_config.get("site-config", ""))
    except Exception as err:  # noqa: BLE001
        facts["facts_error"] = repr(err)
    return facts


def patch_client_app(module: ModuleType, recorder: Recorder) -> None:
    """Wrap ``ClientApp.__call__`` to log arrival and reply of every message."""
    cls = module.ClientApp
    if getattr(cls.__call__, "_bench_wrapped", False):
        return
    original = cls.__call__

    @functools.wraps(original)
    def timed_call(self: Any, message: Any, context: Any) -> Any:
        received = time.time()
        reply = None
        try:
            reply = original(self, message, context)
            return reply
        finally:
            replied = time.time()
            recorder.active = True
            error = None
            try:
                error = reply.error.reason[:200] if reply is not None and reply.has_error() else None
            except Exception:  # noqa: BLE001
                error = "unknown"
            recorder.write(
                "message", received=received, replied=replied, reply_error=error, ok=reply is not None,
                marks=recorder.marks, **message_facts(message, context),
            )  # fmt: skip

    timed_call._bench_wrapped = True  # type: ignore[attr-defined]
    cls.__call__ = timed_call


def mark_steps(module: ModuleType, names: tuple[str, ...], recorder: Recorder) -> None:
    """Wrap module functions to note when their first call began and ended (``<name>:start`` / ``<name>:end``)."""
    for name in names:
        original = getattr(module, name, None)
        if original is None or getattr(original, "_bench_wrapped", False):
            continue

        def marked(*args: Any, _name: str = name, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            recorder.marks.setdefault(f"{_name}:start", time.time())
            try:
                return _original(*args, **kwargs)
            finally:
                recorder.marks.setdefault(f"{_name}:end", time.time())

        marked._bench_wrapped = True  # type: ignore[attr-defined]
        setattr(module, name, functools.wraps(original)(marked))


def work_functions() -> dict[str, list[str]]:
    """The work functions to time, by module (``AXILLA_BENCH_WORK``, default: the three of ``client.site``)."""
    spec = os.environ.get(WORK_ENV) or DEFAULT_WORK
    out: dict[str, list[str]] = {}
    for part in filter(None, spec.split(";")):
        module, _, names = part.partition(":")
        out.setdefault(module.strip(), []).extend(n.strip() for n in names.split(",") if n.strip())
    return out


def patch_work(module: ModuleType, names: list[str], recorder: Recorder) -> None:
    """Wrap a module's work functions; nested calls (candidates -> split) count once."""
    for name in names:
        original = getattr(module, name, None)
        if original is None or getattr(original, "_bench_wrapped", False):
            continue
        setattr(module, name, _timed_work(name, original, recorder))


def _timed_work(name: str, original: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    """``original`` logging its outermost calls as work intervals."""

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(recorder.depth, "n", 0)
        recorder.depth.n = depth + 1
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            recorder.depth.n = depth
            if depth == 0:
                recorder.active = True
                recorder.write("work", fn=name, start=start, end=time.time())

    timed._bench_wrapped = True  # type: ignore[attr-defined]
    return timed


def patch_transfers(module: ModuleType, recorder: Recorder) -> None:
    """Wrap Flower's ``pull_objects`` / ``push_objects`` to log each transfer: span, objects, tries.

    Patched as soon as ``flwr.supercore.inflatable.inflatable_utils`` executes, so the modules that
    import these names from it (SuperNode, ClientApp runtime, ServerApp grid) bind the wrappers.
    """
    for name, fn_key in (("pull_objects", "pull_object_fn"), ("push_objects", "push_object_fn")):
        original = getattr(module, name, None)
        if original is None or getattr(original, "_bench_wrapped", False):
            continue
        setattr(module, name, _timed_transfer(name, fn_key, original, recorder))


def _timed_transfer(name: str, fn_key: str, original: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    """``original`` counting the per-object calls it makes (a pull's extra calls are its retries)."""

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        calls = [0]
        inner = kwargs.get(fn_key)
        if inner is not None:
            def counted(*a: Any, **k: Any) -> Any:
                calls[0] += 1
                return inner(*a, **k)
            kwargs[fn_key] = counted
        objects = len(args[0]) if args and hasattr(args[0], "__len__") else None
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            recorder.write("transfer", fn=name, start=start, end=time.time(), objects=objects, calls=calls[0])

    timed._bench_wrapped = True  # type: ignore[attr-defined]
    return timed


class PostImportHooks(importlib.abc.MetaPathFinder):
    """Runs a hook on a module right after it executes, wherever it is found (sys.path, editable finder, FAB)."""

    def __init__(self, hooks: dict[str, Callable[[ModuleType], None]], marks: dict[str, float]) -> None:
        """``hooks``: module name -> function called with the freshly executed module; ``marks`` gets import times."""
        self.hooks = hooks
        self.marks = marks
        self.busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        """Find the module with the finders after this one and wrap its loader's ``exec_module``."""
        if fullname not in self.hooks or fullname in self.busy:
            return None
        self.marks.setdefault(f"{fullname}:start", time.time())
        self.busy.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self.busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        hook, exec_module = self.hooks[fullname], spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            self.marks.setdefault(f"{fullname}:end", time.time())
            try:
                hook(module)
            except Exception as err:  # noqa: BLE001
                print(f"bench instrument: patching {fullname} failed: {err!r}", file=sys.stderr)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Set the probes up in this process when the timing file is named."""
    path = os.environ.get(TIMING_ENV)
    if not path:
        return
    recorder = Recorder(path)
    hooks: dict[str, Callable[[ModuleType], None]] = {
        "flwr.clientapp.client_app": lambda m: patch_client_app(m, recorder),
        "flwr.supercore.inflatable.inflatable_utils": lambda m: patch_transfers(m, recorder),
        "client.app": lambda m: None,  # only its import time: the ClientApp's own imports (torch, MONAI, ...)
        "flwr.supernode.runtime.run_clientapp": lambda m: mark_steps(m, FLOWER_STEPS, recorder),
    }
    for module, names in work_functions().items():
        hooks[module] = lambda m, names=names: patch_work(m, names, recorder)
    for name, hook in hooks.items():  # already imported (unusual for sitecustomize): patch in place
        if name in sys.modules:
            hook(sys.modules[name])
    sys.meta_path.insert(0, PostImportHooks(hooks, recorder.marks))
    atexit.register(recorder.at_exit)


try:
    install()
except Exception as _err:  # noqa: BLE001
    print(f"bench instrument: not installed: {_err!r}", file=sys.stderr)
