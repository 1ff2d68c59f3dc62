"""DistributedDataParallel on the CPU: two gloo processes train in step and end identical."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from lungcad.models import Task
from lungcad_training.cache import prefill_cache
from lungcad_training.config import TrainConfig
from lungcad_training.engine import make_recipe, validate
from lungcad_training.runtime import Runtime

SPACING = (2.0, 2.0, 2.5)
WORLD_SIZE = 2
TIMEOUT_S = 240

# each rank trains, then saves the state dict of its own replica for the test to compare
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from safetensors.torch import save_file
    from lungcad_training.config import TrainConfig
    from lungcad_training.engine import fit

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
    result = fit(cfg)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.safetensors"))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        task=Task.NODULE,
        data=data,
        out=out,
        cache=out / "cache",
        epochs=2,
        epoch_length=24,  # 12 samples per rank per epoch: 3 steps of 4
        batch_size=4,
        device="cpu",
        workers=0,
        val_stride=2,
        spacing=SPACING,
        crop_size=(16, 24, 24),
        progress=False,
        command="ddp test",
    )


def test_two_gloo_processes_end_with_identical_replicas(
    small_dataset: Path, tmp_path: Path
) -> None:
    cfg = _config(small_dataset, tmp_path / "out")
    prefill_cache(small_dataset, cfg.cache_dir, spacing_xyz=SPACING, progress=False)
    config = cfg.to_dict()
    port = _free_port()
    processes = []
    for rank in range(WORLD_SIZE):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(WORLD_SIZE),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "OMP_NUM_THREADS": "1",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", DRIVER, json.dumps(config), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for rank, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"rank {rank} failed:\n{output[-4000:]}"

    replicas = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(WORLD_SIZE)]
    assert replicas[0].keys() == replicas[1].keys()
    for key, tensor in replicas[0].items():
        assert torch.equal(tensor, replicas[1][key]), f"{key} differs between the replicas"
    assert any("running_mean" in k for k in replicas[0])  # buffers compared too

    # rank 0 alone wrote the run; its validation metrics cover every validation sample
    task_dir = tmp_path / "out" / "nodule"
    assert sorted(p.name for p in task_dir.iterdir()) == ["best.pt", "last.pt", "metrics.csv"]
    with (task_dir / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["phase"]) for r in rows] == [
        ("1", "train"), ("1", "val"), ("2", "train"), ("2", "val"),
    ]  # fmt: skip
    recipe = make_recipe(cfg)
    _, val = recipe.datasets(progress=False)
    model = recipe.build_model()
    model.load_state_dict(replicas[0])
    view = recipe.validation_view(val)
    loader = DataLoader(view, batch_sampler=recipe.validation_batches(view, cfg.batch_size))
    single = validate(model, recipe, loader, Runtime(torch.device("cpu")), None)
    assert float(rows[-1]["loss"]) == pytest.approx(single["loss"], rel=1e-4)
    for name in ("precision", "recall", "f1"):
        assert float(rows[-1][name]) == pytest.approx(single[name], abs=1e-6)
