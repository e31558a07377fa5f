"""Which structures each rank takes, step by step.

Training: every epoch the training set is shuffled by a generator seeded with (seed, epoch) and
cut into global batches of `batch_size`, exactly as one process does; each rank takes a part of
every global batch. So the composition of every optimisation step, and the order of the steps,
are those of a single process on any number of ranks, and every structure is seen once per
epoch. Which rank takes which structure of a batch does not change the sum of their gradients,
so the parts are balanced by atom count (largest structure first to the least loaded rank):
every rank waits for the slowest at the gradient reduction, and data sets mix 2-atom cells with
200-atom slabs. Without sizes the parts are contiguous, `batch_size / world_size` each. A part
of the last, smaller batch may be empty.

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

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, sizes=None):
        check_batch_size(batch_size, world_size)
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.sizes = None if sizes is None else np.asarray(sizes)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> Iterator[np.ndarray]:
        order = epoch_order(self.n, self.seed, self.epoch)
        for start in range(0, self.n, self.batch_size):
            yield order[start:start + self.batch_size]

    def __iter__(self) -> Iterator[List[int]]:
        for batch in self.global_batches():
            yield split_batch(batch, self.world_size, self.sizes)[self.rank].tolist()

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size)


def split_batch(batch: np.ndarray, world_size: int, sizes=None) -> List[np.ndarray]:
    """The ranks' parts of one global batch: contiguous, or balanced by `sizes` (greedy, largest
    first, ties to the rank with fewer structures, then the lower rank; each part keeps the
    batch order)."""
    if sizes is None or world_size == 1:
        return np.array_split(batch, world_size)
    load, parts = [0] * world_size, [[] for _ in range(world_size)]
    for k in sorted(range(len(batch)), key=lambda k: (-int(sizes[batch[k]]), k)):
        r = min(range(world_size), key=lambda r: (load[r], len(parts[r]), r))
        parts[r].append(k)
        load[r] += int(sizes[batch[k]])
    return [batch[sorted(part)] for part in parts]


def contiguous_block(n: int, rank: int, world_size: int) -> range:
    """This rank's contiguous block of n positions (block sizes differ by at most one)."""
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return range(start, start + size + (rank < extra))


def in_batches(positions, batch_size: int) -> List[List[int]]:
    positions = list(positions)
    return [positions[k:k + batch_size] for k in range(0, len(positions), batch_size)]
