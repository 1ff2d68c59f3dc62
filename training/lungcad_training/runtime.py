"""Where a run executes: device, mixed precision, and (under torchrun) the DDP process group.

One :class:`Runtime` per command: ``lungcad-train all`` trains three models in one process group
instead of tearing it down and rebuilding it between stages.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from lungcad.devices import DEVICES, Device
from lungcad_training.errors import TrainingError

log = logging.getLogger(__name__)


class AmpMode(enum.StrEnum):
    """Mixed precision: ``auto`` = bf16 (or fp16 without bf16) on CUDA, off on the CPU."""

    AUTO = "auto"
    OFF = "off"
    FP16 = "fp16"
    BF16 = "bf16"


AMP_MODES = tuple(m.value for m in AmpMode)


@dataclass
class Runtime:
    """This process's device and place in the process group (rank 0 of 1 without torchrun)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = field(default=False, repr=False)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes metrics, checkpoints and exports."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> None:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (just ``[obj]`` in a single process)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm statistics) to every rank.

        DDP broadcasts buffers at the start of each forward, so after the last training step
        every rank's running statistics differ; this makes the replicas identical again before
        they validate (each rank validates a share) and before rank 0 saves.
        """
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def resolve_device(name: Device | str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a fallback."""
    if name not in DEVICES:
        raise TrainingError(f"unknown device {name!r} (known: {', '.join(DEVICES)})")
    if name == Device.AUTO:
        name = Device.CUDA if torch.cuda.is_available() else Device.CPU
    if name == Device.CUDA:
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda was asked for but no CUDA GPU is available")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise TrainingError(f"environment variable {name}={value!r} is not an integer") from None


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun)."""
    return _env_int("RANK", 0)


def start_runtime(device: Device | str = Device.AUTO) -> Runtime:
    """The device, and the process group when torchrun (or a test) set WORLD_SIZE > 1.

    Backend nccl on CUDA, gloo on CPU; rendezvous from MASTER_ADDR / MASTER_PORT / RANK.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return Runtime(dev)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        owns = True
    runtime = Runtime(dev, dist.get_rank(), dist.get_world_size(), local_rank, owns)
    log.info(
        "rank %d of %d on %s (%s backend)",
        runtime.rank,
        runtime.world_size,
        dev,
        dist.get_backend(),
    )
    return runtime


@contextlib.contextmanager
def runtime_session(device: Device | str = Device.AUTO) -> Iterator[Runtime]:
    """:func:`start_runtime`, closing the process group it opened on the way out."""
    runtime = start_runtime(device)
    try:
        yield runtime
    finally:
        runtime.close()


def amp_dtype(mode: AmpMode | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision.

    ``auto``: bf16 on GPUs that support it (no loss scaling needed), else fp16; off on CPU, where
    autocast mostly slows convolutions down.
    """
    if mode not in AMP_MODES:
        raise TrainingError(f"unknown --amp {mode!r} (known: {', '.join(AMP_MODES)})")
    mode = AmpMode(mode)
    if mode is AmpMode.OFF or (mode is AmpMode.AUTO and device.type != "cuda"):
        return None
    if mode is AmpMode.AUTO:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode is AmpMode.FP16 and device.type != "cuda":
        raise TrainingError("--amp fp16 needs a CUDA device (use bf16 or off on the CPU)")
    return torch.float16 if mode is AmpMode.FP16 else torch.bfloat16


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), or what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_hardware(runtime: Runtime, amp: torch.dtype | None) -> dict[str, Any]:
    """What trained a model, for the model card: CPU, GPU, process count, precision."""
    info: dict[str, Any] = {
        "device": runtime.device.type,
        "processes": runtime.world_size,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "precision": str(amp).removeprefix("torch.") if amp is not None else "float32",
        "torch": str(torch.__version__),
    }
    if runtime.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(runtime.device)
        info["gpus_per_node"] = torch.cuda.device_count()
    return info


def hardware_text(info: dict[str, Any]) -> str:
    """One phrase: '1 process on cpu (AMD EPYC, 2 cores), float32'."""
    procs = info.get("processes", 1)
    where = f"{procs} process{'es' if procs != 1 else ''} on {info.get('device', '?')}"
    if info.get("gpu"):
        where += f" ({info['gpu']}, {info.get('gpus_per_node', '?')} GPUs per node)"
    else:
        where += f" ({info.get('cpu', '?')}, {info.get('cpu_count', '?')} cores)"
    return f"{where}, {info.get('precision', 'float32')}, torch {info.get('torch', '?')}"
