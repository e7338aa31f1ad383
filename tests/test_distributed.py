"""DistributedDataParallel on two CPU processes (gloo) matches one process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cqdkit.losses.fitnet import FitNet
from cqdkit.losses.term import WeightedTerm
from cqdkit.models.preprocessing import Normalizer
from cqdkit.train.engine import Objective, Optimization, TeacherSignal, fit
from cqdkit.train.hardware import Hardware
from cqdkit.train.teacher import FrozenTeacher

from .test_train_engine import PairedTensors

OPT = Optimization(epochs=3, batch_size=8, lr=0.05, lr_end=0.01, seed=4)
NORMALIZER = Normalizer([0.5] * 3, [0.25] * 3)


def model_without_dropout() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3))


def hint_objective() -> Objective:
    """CE plus a FitNets hint from a frozen teacher's hidden layer, through a regressor the term owns."""
    torch.manual_seed(1)
    term = FitNet(teacher_layer="2", student_layer="2", teacher_channels=16, student_channels=16)
    teacher = FrozenTeacher(model_without_dropout())
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.mul_(-1.5)  # a teacher other than the student's start
    return Objective(view="z", terms=[WeightedTerm("hint", term, 0.5)],
                     teacher=TeacherSignal(teacher=teacher, normalizer=NORMALIZER, layers=("2",)))


OBJECTIVES = {"ce": lambda: Objective(view="z"), "hint": hint_objective}


def _worker(rank: int, world_size: int, init_file: str, out: str, objective: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        model = model_without_dropout()
        hardware = Hardware(device=torch.device("cpu"))
        trained = OBJECTIVES[objective]()
        fit(model, NORMALIZER, PairedTensors(), trained, OPT, hardware, Path(out))
        if rank == 0:
            torch.save({**model.state_dict(), **{f"parts.{k}": v for k, v in trained.parts.state_dict().items()}},
                       os.path.join(out, "final.pt"))
        dist.barrier()  # both leave the group together: gloo aborts a process that tears it down mid-use
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["ce", "hint"])
def test_two_gloo_processes_match_one(tmp_path, objective):
    single = model_without_dropout()
    trained = OBJECTIVES[objective]()
    fit(single, NORMALIZER, PairedTensors(), trained, OPT, Hardware(), tmp_path / "one")
    expected = {**single.state_dict(), **{f"parts.{k}": v for k, v in trained.parts.state_dict().items()}}

    out = tmp_path / "two"
    out.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out), objective), nprocs=2, join=True)
    distributed = torch.load(out / "final.pt", weights_only=True)
    assert distributed.keys() == expected.keys()
    for name, tensor in expected.items():  # the student, and the hint's regressor: both synchronised
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-4, atol=1e-5)
    assert not torch.equal(distributed["1.weight"], model_without_dropout().state_dict()["1.weight"])
    if objective == "hint":
        assert not torch.equal(distributed["parts.hint.regressor.weight"], hint_objective().parts.state_dict()[
            "hint.regressor.weight"])
