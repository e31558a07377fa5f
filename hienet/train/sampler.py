"""Which structures each rank takes, step by step.

Training: every epoch the training set is shuffled by a generator seeded with (seed, epoch) and
cut into global batches of `batch_size`, exactly as one process does; each rank takes a
contiguous part of every global batch (`batch_size / world_size` structures, the parts of the
last, smaller batch differ by at most one and may be empty). So the composition of every
optimisation step, and the order of the steps, are those of a single process on any number
of ranks, and every structure is seen once per epoch.

`torch.utils.data.DistributedSampler` shards the whole epoch instead (rank r takes every W-th
index) and pads it with repeated indices to a multiple of the world size: with a training set
that is not a multiple of the world size the last batch then holds duplicates and differs from
the single-process one, and ranks can end up with different numbers of steps.

Evaluation has no steps to agree on: each rank evaluates one contiguous block of the data set.
"""
from typing import Iterator, List

import numpy as np
import torch.utils.data


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of n structures in epoch `epoch` (1-based) of a run with `seed`."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def num_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def check_batch_size(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the number of processes {world_size}: "
                         "batch_size is the global batch, split evenly over the processes (torchrun "
                         "--nproc_per_node x nodes, or srun tasks); use a multiple of the world size")


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This rank's part of each global batch of a seeded shuffle (see the module doc).

    Yields lists of dataset positions; an empty list when the rank has no part of a short last
    batch (the trainer still joins that step's gradient reduction). Call `set_epoch` first.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        check_batch_size(batch_size, world_size)
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> Iterator[np.ndarray]:
        order = epoch_order(self.n, self.seed, self.epoch)
        for start in range(0, self.n, self.batch_size):
            yield order[start:start + self.batch_size]

    def __iter__(self) -> Iterator[List[int]]:
        for batch in self.global_batches():
            yield np.array_split(batch, self.world_size)[self.rank].tolist()

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size)


def contiguous_block(n: int, rank: int, world_size: int) -> range:
    """This rank's contiguous block of n positions (block sizes differ by at most one)."""
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return range(start, start + size + (rank < extra))


def in_batches(positions, batch_size: int) -> List[List[int]]:
    positions = list(positions)
    return [positions[k:k + batch_size] for k in range(0, len(positions), batch_size)]
