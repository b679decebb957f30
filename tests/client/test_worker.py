"""The site worker and its link: the wire format, serving, failures, socket permissions, a real worker process, supervision."""

from __future__ import annotations

import math
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.config import parse_config_args

from client import worker_link
from client.cli import NodeConfigError, node_config
from client.site_processes import SiteWorker, WorkerStartError
from client.errors import SiteDataError
from client.private_socket import SocketSetupError, private_folder
from client.worker import serve
from protocol.messages import WORKER_BAD_REQUEST, WORKER_FAILED, WORKER_TIMEOUT
from client.worker_link import (
    WireError,
    WorkerError,
    WorkerTimeout,
    WorkerUnavailable,
    decode_records,
    encode_records,
    forward,
    ping,
    recv_frame,
    send_frame,
)
from tests.conftest import make_site, running, unix_peer

Handler = Callable[[str, RecordDict, dict[str, Any]], RecordDict]
START_TIMEOUT = 240.0  # a real worker imports torch and MONAI before it listens (slow on a shared machine)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def sample_content() -> RecordDict:
    """Every record kind, dtypes a state dict holds, empty records and lists."""
    arrays = ArrayRecord(
        {
            "conv.weight": Array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)),
            "bn.num_batches_tracked": Array(np.array(7, dtype=np.int64)),
            "bn.running_mean": Array(np.linspace(-1, 1, 4, dtype=np.float64)),
            "mask": Array(np.arange(12, dtype=np.uint8).reshape(3, 4)),
            "big.int": Array(np.array([2**62, -(2**62)], dtype=np.int64)),
            "flags": Array(np.array([True, False])),
            "half": Array(np.array([1.5, -2.25], dtype=np.float16)),
            "empty": Array(np.zeros((0, 3), dtype=np.float32)),
        }
    )
    config = ConfigRecord(
        {"site": "alpha", "round": 3, "lr": 1e-3, "on": True, "blob": b"\x00\xffraw", "ints": [1, 2, 3],
         "floats": [0.5, 1.5], "strs": ["a", "b/c"], "bools": [True, False], "blobs": [b"x", b""], "none": []}
    )  # fmt: skip
    metrics = MetricRecord({"auc": 0.75, "n": 20, "nan": float("nan"), "ci": [0.6, 0.9], "hist": [0, 3, 5], "empty": [], "huge": 2**63})
    return RecordDict({"arrays": arrays, "config": config, "metrics": metrics, "no-arrays": ArrayRecord(), "no-config": ConfigRecord(), "no-metrics": MetricRecord()})


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same(got: RecordDict, want: RecordDict) -> None:
    """Same record names in the same order, same record types, keys, values, dtypes, shapes and bytes."""
    assert list(got.keys()) == list(want.keys())
    for name, record in want.items():
        other = got[name]
        assert type(other) is type(record), name
        assert list(other.keys()) == list(record.keys()), name
        if isinstance(record, ArrayRecord):
            for key, array in record.items():
                back = other[key]
                assert (back.dtype, tuple(back.shape), back.stype, back.data) == (array.dtype, tuple(array.shape), array.stype, array.data), key
                np.testing.assert_array_equal(back.numpy(), array.numpy())
                assert back.numpy().dtype == array.numpy().dtype
        else:
            for key, value in record.items():
                assert _same_value(other[key], value), (name, key, other[key], value)


def _over_socketpair(content: RecordDict) -> RecordDict:
    """Send ``content`` as a frame through a socket pair and decode it on the other end."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    records, chunks = encode_records(content)
    with left, right:
        sender = threading.Thread(target=send_frame, args=(left, {"records": records}, chunks))
        sender.start()
        header, body = recv_frame(right, time.monotonic() + 30)
        sender.join(30)
    return decode_records(header["records"], body)


# --- (a) the wire format -----------------------------------------------------------------------


def test_every_record_kind_dtype_and_empty_record_round_trips() -> None:
    content = sample_content()
    assert_same(_over_socketpair(content), content)
    assert_same(_over_socketpair(RecordDict()), RecordDict())


def test_a_torch_state_dict_with_batchnorm_counters_round_trips() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    model(torch.randn(2, 1, 5, 5))
    state = model.state_dict()
    back = _over_socketpair(RecordDict({"arrays": ArrayRecord(state)}))["arrays"].to_torch_state_dict()
    assert list(back) == list(state)
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and back[key].shape == tensor.shape, key
        assert torch.equal(back[key], tensor), key
    assert back["1.num_batches_tracked"].dtype == torch.int64 and int(back["1.num_batches_tracked"]) == 1


def test_malformed_frames_are_refused_not_executed() -> None:
    records, chunks = encode_records(RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(4, np.float32))})}))
    records[0]["items"][0]["length"] += 1  # one byte past the body
    with pytest.raises(WireError, match="outside"):
        decode_records(records, memoryview(b"".join(chunks)))
    with pytest.raises(WireError, match="unknown type"):
        decode_records([{"name": "x", "type": "pickle", "items": []}], memoryview(b""))
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        left.sendall(b"\x80\x04\x95" + b"\0" * 13)  # a pickle's opening bytes, not a frame
        with pytest.raises(WireError, match="magic"):
            recv_frame(right, time.monotonic() + 5)


# --- a worker served in a thread ---------------------------------------------------------------


@contextmanager
def served(tmp_path: Path, handler: Handler) -> Iterator[Path]:
    """A worker serving ``handler`` in a thread at ``tmp_path/run/w.sock``; stopped (and checked gone) afterwards."""
    path = tmp_path / "run" / "w.sock"
    ready, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(path, handler, ready.set, stop)
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10) and not errors, errors
    try:
        yield path
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive() and not errors, errors
        assert not path.exists(), "the socket file outlived the worker"


def echo(kind: str, content: RecordDict, node_config: dict[str, Any]) -> RecordDict:
    """A fake work function: the sum of the received arrays, and what it was asked."""
    total = sum(float(a.numpy().sum()) for record in content.array_records.values() for a in record.values())
    return RecordDict(
        {"arrays": content.array_records.get("arrays", ArrayRecord()), "metrics": MetricRecord({"sum": total}),
         "asked": ConfigRecord({"kind": kind, "site": str(node_config["site-config"])})}
    )  # fmt: skip


def test_forward_answers_with_the_handlers_reply(tmp_path: Path) -> None:
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.full((2, 3), 2.0, np.float32)), "n": Array(np.array(5, np.int64))})})
    with served(tmp_path, echo) as path:
        reply = forward(path, "train", content, {"site-config": "/sites/a.yaml", "partition-id": 0}, timeout=30)
        assert ping(path)["pid"] == os.getpid() and ping(path)["served"] == 1
    assert reply["metrics"]["sum"] == 17.0
    assert dict(reply["asked"]) == {"kind": "train", "site": "/sites/a.yaml"}
    assert_same(RecordDict({"arrays": reply["arrays"]}), RecordDict({"arrays": content["arrays"]}))


def test_a_large_message_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = ArrayRecord({f"seg{i}.w": Array(rng.standard_normal(1_750_000).astype(np.float32)) for i in range(3)})  # 21 MB
    with served(tmp_path, echo) as path:
        reply = forward(path, "evaluate", RecordDict({"arrays": arrays}), {"site-config": "a"}, timeout=60)
    assert_same(RecordDict({"arrays": reply["arrays"]}), RecordDict({"arrays": arrays}))


# --- (c) failures become error replies, and the worker keeps serving ---------------------------


def test_a_handler_exception_becomes_a_path_free_error_and_the_worker_keeps_serving(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def flaky(kind: str, content: RecordDict, node_config: dict[str, Any]) -> RecordDict:
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("cannot read /hospital/secret/case-0042.dcm")
        if len(calls) == 2:
            raise SiteDataError("row 3 of /hospital/manifest.csv: no label", "a manifest row has no label")
        if len(calls) == 3:
            sys.exit(3)  # a library that exits must not end the worker
        return RecordDict({"metrics": MetricRecord({"ok": 1})})

    with served(tmp_path, flaky) as path:
        with pytest.raises(WorkerError) as failed:
            forward(path, "evaluate", RecordDict(), {}, timeout=30)
        assert (failed.value.code, failed.value.reason) == (WORKER_FAILED, "site worker failed: RuntimeError")
        with pytest.raises(WorkerError) as refused:
            forward(path, "query", RecordDict(), {}, timeout=30)
        assert (refused.value.code, refused.value.reason) == (4001, "a manifest row has no label")
        with pytest.raises(WorkerError, match="SystemExit"):
            forward(path, "train", RecordDict(), {}, timeout=30)
        assert forward(path, "train", RecordDict(), {}, timeout=30)["metrics"]["ok"] == 1
    assert "/" not in failed.value.reason and "secret" not in failed.value.reason
    assert "cannot read /hospital/secret/case-0042.dcm" in caplog.text and "Traceback" in caplog.text  # logged locally only


def test_bad_requests_and_bad_replies_get_error_replies(tmp_path: Path) -> None:
    with served(tmp_path, lambda kind, content, config: "not a RecordDict") as path:  # type: ignore[arg-type,return-value]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(str(path))
            send_frame(raw, {"op": "work", "kind": "delete-everything", "node_config": {}, "records": []})
            header, _ = recv_frame(raw, time.monotonic() + 10)
        assert header == {"ok": False, "code": WORKER_BAD_REQUEST, "reason": "site worker: bad request"}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(str(path))
            raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
            header, _ = recv_frame(raw, time.monotonic() + 10)
        assert header["code"] == WORKER_BAD_REQUEST
        with pytest.raises(WorkerError) as failed:
            forward(path, "query", RecordDict(), {}, timeout=30)
        assert failed.value.code == WORKER_FAILED and ping(path)["served"] == 1
    with pytest.raises(ValueError, match="kind"):
        forward(path, "shutdown", RecordDict(), {}, timeout=1)


def test_forward_times_out_while_ping_still_answers(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(kind: str, content: RecordDict, node_config: dict[str, Any]) -> RecordDict:
        release.wait(30)
        return RecordDict()

    with served(tmp_path, slow) as path:
        with pytest.raises(WorkerTimeout) as late:
            forward(path, "train", RecordDict(), {}, timeout=0.5)
        assert late.value.code == WORKER_TIMEOUT and ping(path)["busy"] is True
        release.set()
        wait_for(lambda: ping(path)["busy"] is False, 10, "the slow request to end")


# --- (d) an unreachable worker -----------------------------------------------------------------


def test_forward_to_a_missing_or_dead_socket_is_unavailable_quickly(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(WorkerUnavailable):
        forward(tmp_path / "none.sock", "query", RecordDict(), {}, timeout=30)
    stale = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # the file stays, nobody listens: connection refused
    with pytest.raises(WorkerUnavailable):
        forward(stale, "query", RecordDict(), {}, timeout=30)
    assert time.monotonic() - start < 2.0


def test_a_worker_that_dies_mid_request_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "dying.sock"
    with unix_peer(path, lambda conn: recv_frame(conn, time.monotonic() + 10)), pytest.raises(WorkerUnavailable, match="mid-request"):
        forward(path, "train", RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(1000, np.float32))})}), {}, timeout=30)


# --- (e) permissions and paths -----------------------------------------------------------------


def test_socket_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    with served(tmp_path, echo) as path:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_open_folders_long_paths_and_a_live_worker_are_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(SocketSetupError, match=str(shared)):
        private_folder(shared)
    long_path = tmp_path / ("x" * 120) / "w.sock"
    with pytest.raises(SocketSetupError, match="longer than the AF_UNIX limit"):
        serve(long_path, echo)
    short = worker_link.socket_path_for(tmp_path / ("y" * 120))
    assert worker_link.fits_unix_path(short) and stat.S_IMODE(os.stat(short.parent).st_mode) == 0o700
    os.rmdir(short.parent)
    with served(tmp_path, echo) as path, pytest.raises(SocketSetupError, match="already listening"):
        serve(path, echo)


# --- node config and error codes ---------------------------------------------------------------


def test_node_config_carries_the_site_config_and_the_worker_socket(tmp_path: Path) -> None:
    site = make_site(tmp_path / "with space", "alpha", n=4)
    parsed = parse_config_args([node_config(site, Path("/run/axilla/w.sock"))])
    assert parsed == {"site-config": str(site.resolve()), "site-worker": "/run/axilla/w.sock"}
    assert parse_config_args([node_config(site)]) == {"site-config": str(site.resolve())}


def test_node_config_carries_quotes_and_backslashes_or_refuses_by_name(tmp_path: Path) -> None:
    site = make_site(tmp_path / "o'brien \\ clinic", "alpha", n=4)
    parsed = parse_config_args([node_config(site, Path("/run/it's/w.sock"))])
    assert parsed == {"site-config": str(site.resolve()), "site-worker": "/run/it's/w.sock"}
    with pytest.raises(NodeConfigError, match="site-worker.*both quote characters"):
        node_config(site, Path('/run/it\'s "a"/w.sock'))


def test_error_codes_are_distinct_in_the_protocol() -> None:
    from protocol import messages

    codes = [v for k, v in vars(messages).items() if k.isupper() and isinstance(v, int) and 4000 <= v < 5000]
    assert len(codes) == len(set(codes)) and {WORKER_FAILED, WORKER_BAD_REQUEST, WORKER_TIMEOUT} <= set(codes)


def test_the_worker_refuses_as_the_client_app_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.app import Context, Message
    from flwr.app.metadata import Metadata

    import client.app
    from client.model_store import MissingModelError
    from client.work import refusal
    from protocol.messages import ProtocolError

    meta = Metadata(run_id=1, message_id="m", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="1", created_at=0.0, ttl=60.0, message_type="train")
    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    refusals = (SiteDataError("row 2 of /h/m.csv", "a manifest row is bad"), MissingModelError("model abc123 is not held at this site"), ProtocolError("no 'run' record"))
    for err in refusals:

        def raising(kind: str, content: RecordDict, node_config: dict[str, Any], err: Exception = err) -> RecordDict:
            raise err

        monkeypatch.setattr(client.app, "run_work", raising)
        reply = client.app.handle(Message(metadata=meta, content=RecordDict()), context)
        assert (reply.error.code, reply.error.reason) == refusal(err), type(err).__name__
    assert refusal(RuntimeError("x")) is None


# --- (f) a real worker process, and axilla-client's supervision of it --------------------------


def _answers(path: Path, proc: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether the worker answers a ping (failing at once, with its log, if it exited)."""
    assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
    try:
        return ping(path, 1.0)["pid"] == proc.pid
    except (WorkerUnavailable, WorkerError):
        return False


def test_a_real_worker_process_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    from protocol.messages import Describe, SiteDescription

    from protocol.clinical import CLINICAL, ClinicalQuery, parse_schema

    def with_age(rows: list[dict[str, str]]) -> None:
        for i, row in enumerate(rows):
            row["age"] = str(40 + i)

    site = make_site(tmp_path, "alpha", n=8, rows=with_age)
    path, log = tmp_path / "run" / "w.sock", tmp_path / "worker.log"
    with running([sys.executable, "-m", "client.worker", "--site", str(site), "--socket", str(path)], log) as proc:
        wait_for(lambda: _answers(path, proc, log), START_TIMEOUT, "the worker to answer a ping")
        reply = forward(path, "query", RecordDict(Describe().records()), {"site-config": str(site)}, timeout=120)
        assert SiteDescription.from_content(reply).site == "alpha"
        schema = forward(path, CLINICAL, RecordDict(ClinicalQuery(job="schema", split="all").records()), {"site-config": str(site)}, timeout=120)
        assert [(v.name, v.kind) for v in parse_schema(schema)] == [("age", "continuous")]  # every message kind reaches the worker
        with pytest.raises(WorkerError) as refused:
            forward(path, "query", RecordDict(Describe().records()), {"site-config": str(tmp_path / "none.yaml")}, timeout=60)
        assert refused.value.code == 4001 and "/" not in refused.value.reason
    assert not path.exists()
    assert "listening on" in log.read_text() and "none.yaml" in log.read_text()
    assert "(preloaded: client.site)" in log.read_text()  # torch and MONAI were imported before the worker listened


def test_axilla_client_restarts_a_dead_worker_and_stops_it(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=4)
    worker = SiteWorker(site, tmp_path / "run" / "w.sock", tmp_path / "logs" / "worker.log", max_delay=1.0, extra_args=("--no-preload",))
    try:
        worker.start()
        first = worker.pid
        assert first is not None and ping(worker.socket_path)["pid"] == first
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: worker.pid != first, 30, "a new worker process")
        new = worker.pid
        wait_for(lambda: _pinged_pid(worker.socket_path) == new, START_TIMEOUT, "the restarted worker to answer")
    finally:
        worker.stop()
    assert new is not None and _gone(new) and not worker.socket_path.exists()
    assert worker.log_path.read_text().count("listening on") == 2


def test_a_worker_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    worker = SiteWorker(tmp_path / "missing.yaml", tmp_path / "run" / "w.sock", tmp_path / "logs" / "worker.log")
    try:
        with pytest.raises(WorkerStartError, match="exited with code 2") as failed:
            worker.start()
    finally:
        worker.stop()
    assert str(worker.log_path) in str(failed.value) and "missing.yaml" in str(failed.value)


def _pinged_pid(path: Path) -> int | None:
    try:
        return int(ping(path, 1.0)["pid"])
    except (WorkerUnavailable, WorkerError):
        return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state in ("Z", "X")
