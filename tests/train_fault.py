"""A torchrun entry point for tests: `hienet-train` with a fault on rank $FAULT_RANK just before
global step $FAULT_STEP: FAULT=kill (the process is SIGKILLed, e.g. out of memory) or FAULT=nan
(its part of the batch gives a NaN loss)."""
import os
import signal
import sys
import time

import torch

from hienet.train.cli import main
from hienet.train.trainer import Trainer

FAULT, RANK, STEP = os.environ["FAULT"], int(os.environ["FAULT_RANK"]), int(os.environ["FAULT_STEP"])
_train_step = Trainer.train_step


def train_step(self, *args, **kwargs):
    if self.processes.rank == RANK and self.step + 1 == STEP:
        if FAULT == "kill":
            if "FAULT_STAMP" in os.environ:  # when the rank died, for the test to time the ending
                with open(os.environ["FAULT_STAMP"], "w") as f:
                    f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        loss_fn = self.loss_fn
        self.loss_fn = lambda out, batch: tuple((total * torch.nan, parts) for total, parts in [loss_fn(out, batch)])[0]
    return _train_step(self, *args, **kwargs)


Trainer.train_step = train_step
sys.exit(main(sys.argv[1:]))
