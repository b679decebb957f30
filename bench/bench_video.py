"""Benchmark: clips per second of each video network (resnet3d, r2plus1d, tsm, tin), training and inference.

Run: ``OMP_NUM_THREADS=2 python bench/bench_video.py [--frames 8] [--image-size 48] [--width 8] [--batch 8]
[--warmup 2] [--iters 5] [--out FILE]``. Figures, not pass/fail tests.

* CPU, at the CPU preset (T = 8 frames of 48 x 48, stage width 8, batches of 8 one-channel clips),
  float32: a training step is forward, binary cross-entropy, backward and an Adam step; inference is
  a forward pass under ``torch.inference_mode``.
* GPU, when CUDA is available (``--no-gpu`` skips it), at the papers' size (T = 16 frames of
  224 x 224, width 64 = the standard ResNet-18, batches of 8) under ``torch.autocast`` (bfloat16
  where the card has it, else float16 with a gradient scaler).

Warm-up iterations are not timed; clips/s = batch x timed iterations / their wall time. Prints a
Markdown table and writes ``bench/results/<date>-<host>-video.json`` (or ``--out``) with the machine and its
1-minute load average before and after (other work on the machine slows every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from models.video_nets import VIDEO_NETWORKS, build_video_network  # noqa: E402


@dataclass(frozen=True)
class Setting:
    """Where and at what size one network is timed."""

    device: str
    frames: int
    image_size: int
    width: int
    batch: int
    precision: str  # float32, bfloat16 or float16 (autocast)


def autocast(setting: Setting) -> Any:
    """Mixed precision on the GPU at the setting's precision, nothing on the CPU."""
    if setting.precision == "float32":
        return nullcontext()
    return torch.autocast(setting.device, dtype=getattr(torch, setting.precision))


def sync(device: str) -> None:
    """Wait for the GPU's queued work (timings end on a finished step)."""
    if device == "cuda":
        torch.cuda.synchronize()


def timed(step: Any, device: str, warmup: int, iters: int) -> float:
    """Seconds of ``iters`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return time.perf_counter() - start


def train_rate(net: nn.Module, setting: Setting, warmup: int, iters: int) -> float:
    """Clips/s of training steps: forward, BCE with logits, backward, Adam."""
    clips = torch.randn(setting.batch, 1, setting.frames, setting.image_size, setting.image_size, device=setting.device)
    labels = torch.randint(0, 2, (setting.batch, 1), device=setting.device).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(setting.device, enabled=setting.precision == "float16")
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()

    def step() -> None:
        """One optimiser step."""
        optimizer.zero_grad(set_to_none=True)
        with autocast(setting):
            loss = loss_fn(net(clips).float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return setting.batch * iters / timed(step, setting.device, warmup, iters)


def inference_rate(net: nn.Module, setting: Setting, warmup: int, iters: int) -> float:
    """Clips/s of forward passes in evaluation mode."""
    clips = torch.randn(setting.batch, 1, setting.frames, setting.image_size, setting.image_size, device=setting.device)
    net.eval()

    def step() -> None:
        """One forward pass."""
        with torch.inference_mode(), autocast(setting):
            net(clips)

    return setting.batch * iters / timed(step, setting.device, warmup, iters)


def measure(name: str, setting: Setting, warmup: int, iters: int) -> dict[str, Any]:
    """One row: the network's parameters and its training and inference clips/s (or the error, e.g. out of memory)."""
    torch.manual_seed(0)
    net = build_video_network(name, 1, 1, setting.frames, setting.width).to(setting.device)
    row: dict[str, Any] = {"model": name, **asdict(setting), "parameters": sum(p.numel() for p in net.parameters())}
    try:
        row["train_clips_per_s"] = round(train_rate(net, setting, warmup, iters), 2)
        row["inference_clips_per_s"] = round(inference_rate(net, setting, warmup, iters), 2)
    except torch.cuda.OutOfMemoryError as error:
        row["error"] = f"out of memory: {str(error).splitlines()[0]}"
    finally:
        del net
        if setting.device == "cuda":
            torch.cuda.empty_cache()
    return row


def gpu_precision() -> str:
    """bfloat16 where the GPU has it, else float16."""
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def machine() -> dict[str, Any]:
    """Where it ran."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    facts: dict[str, Any] = {
        "host": socket.gethostname(), "cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__,
    }  # fmt: skip
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def commit() -> str:
    """The measured checkout's commit (empty outside git)."""
    done = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per network and setting."""
    lines = ["| model | device | precision | T x px, width, batch | parameters | train clips/s | inference clips/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['frames']} x {r['image_size']}, {r['width']}, {r['batch']}"
        train, infer = r.get("train_clips_per_s", r.get("error", "–")), r.get("inference_clips_per_s", "–")
        lines.append(f"| {r['model']} | {r['device']} | {r['precision']} | {size} | {r['parameters']:,} | {train} | {infer} |")
    return "\n".join(lines)


def settings(args: argparse.Namespace) -> list[Setting]:
    """The CPU preset, and the papers' size on the GPU when there is one."""
    chosen = [Setting("cpu", args.frames, args.image_size, args.width, args.batch, "float32")]
    if torch.cuda.is_available() and not args.no_gpu:
        chosen.append(Setting("cuda", args.gpu_frames, args.gpu_image_size, args.gpu_width, args.gpu_batch, gpu_precision()))
    return chosen


def main() -> None:
    """Time every network in every setting, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(VIDEO_NETWORKS))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--gpu-frames", type=int, default=16)
    parser.add_argument("--gpu-image-size", type=int, default=224)
    parser.add_argument("--gpu-width", type=int, default=64)
    parser.add_argument("--gpu-batch", type=int, default=8)
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", type=Path, help="result file (default: bench/results/<date>-<host>-video.json)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = [measure(name, setting, args.warmup, args.iters) for setting in settings(args) for name in args.models.split(",")]
    result = {
        "bench": "video", "date": datetime.now().isoformat(timespec="seconds"), "commit": commit(), "machine": machine(),
        "load_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}, "warmup": args.warmup, "iterations": args.iters, "rows": rows,
    }  # fmt: skip
    print(table(rows))
    out = args.out or BENCH / "results" / f"{datetime.now():%Y-%m-%d}-{socket.gethostname()}-video.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
