"""DistributedDataParallel on two CPU processes (gloo) matches one process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cqdkit.models.preprocessing import Normalizer
from cqdkit.train.engine import Objective, Optimization, fit
from cqdkit.train.hardware import Hardware

from .test_train_engine import PairedTensors

OPT = Optimization(epochs=3, batch_size=8, lr=0.05, lr_end=0.01, seed=4)
NORMALIZER = Normalizer([0.5] * 3, [0.25] * 3)


def model_without_dropout() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3))


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        model = model_without_dropout()
        hardware = Hardware(device=torch.device("cpu"))
        fit(model, NORMALIZER, PairedTensors(), Objective(view="z"), OPT, hardware, Path(out))
        if rank == 0:
            torch.save(model.state_dict(), os.path.join(out, "final.pt"))
        dist.barrier()  # both leave the group together: gloo aborts a process that tears it down mid-use
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    single = model_without_dropout()
    fit(single, NORMALIZER, PairedTensors(), Objective(view="z"), OPT, Hardware(), tmp_path / "one")

    out = tmp_path / "two"
    out.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    distributed = torch.load(out / "final.pt", weights_only=True)
    for name, tensor in single.state_dict().items():
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-4, atol=1e-5)
    assert not torch.equal(distributed["1.weight"], model_without_dropout().state_dict()["1.weight"])
