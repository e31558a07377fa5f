"""Processes of a data-parallel run: who am I, which device, and the few collectives the trainer needs.

A run is data parallel when it is started by

* `torchrun` (sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or
* Slurm's `srun` (sets SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_NODELIST);
  MASTER_ADDR defaults to the first node of the step and MASTER_PORT to a port derived from
  the job id, unless they are set. Only `srun` sets SLURM_STEP_NUM_TASKS: a plain `hienet-train`
  in a batch script of a many-task job is one process, not rank 0 of processes that never start.

Otherwise it is one process and every collective below is a no-op. One device per rank:
CUDA device LOCAL_RANK (NCCL) when CUDA is used, else the CPU (gloo). The collectives have a
timeout (`collective_timeout_s`), so a rank that is gone ends the others with an error instead of a
hang; torchrun also stops the remaining ranks as soon as one fails and names it.
"""
import datetime
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional

import torch

from ..devices import resolve_device


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # single | torchrun | slurm

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(environ: Mapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={environ[key]!r} is not an integer") from None


def first_host(nodelist: str) -> str:
    """The first host of a Slurm hostlist expression: 'gpu[07-09,12],cpu3' -> 'gpu07'."""
    text = nodelist.strip()
    if not text:
        raise ValueError("empty Slurm node list")
    depth, end = 0, len(text)
    for k, ch in enumerate(text):  # the first top-level comma ends the first item
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = k
            break
    item = text[:end]
    # each bracket group [a-b,c] contributes its first value, zero padding kept
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], item)


def detect(environ: Optional[Mapping[str, str]] = None) -> Processes:
    """The processes of this run from the environment of torchrun or srun (see the module doc)."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        rank = _int(env, "RANK")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        launcher = "torchrun"
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env and _int(env, "SLURM_STEP_NUM_TASKS") > 1:
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        rank = _int(env, "SLURM_PROCID")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        launcher = "slurm"
    else:
        return Processes()
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not within the world size {world} ({launcher} environment)")
    return Processes(rank=rank, world_size=world, local_rank=local, launcher=launcher)


def rendezvous_environment(processes: Processes, environ: Optional[Mapping[str, str]] = None) -> dict:
    """MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE for torch's env:// rendezvous (srun derives the
    first two from the node list and the job id unless they are set)."""
    env = os.environ if environ is None else environ
    out = {"RANK": str(processes.rank), "WORLD_SIZE": str(processes.world_size),
           "LOCAL_RANK": str(processes.local_rank)}
    if processes.launcher == "slurm":
        if "MASTER_ADDR" not in env:
            nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
            if not nodelist:
                raise ValueError("srun run without MASTER_ADDR or SLURM_STEP_NODELIST: set MASTER_ADDR to the "
                                 "host of rank 0")
            out["MASTER_ADDR"] = first_host(nodelist)
        if "MASTER_PORT" not in env:
            ports = env.get("SLURM_STEP_RESV_PORTS", "")
            if ports:  # ports reserved for this step by Slurm (MpiParams=ports=...)
                out["MASTER_PORT"] = re.split(r"[-,]", ports)[0]
            else:  # distinct per job, so two jobs sharing a node do not collide
                out["MASTER_PORT"] = str(15000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in out and key not in env:
            raise ValueError(f"{processes.launcher} run without {key} in the environment")
    return out


def device_for(processes: Processes, option: str) -> torch.device:
    """The device of this rank: 'auto'/'cuda' become cuda:LOCAL_RANK in a data-parallel run."""
    if not processes.distributed:
        return resolve_device(option)
    if option in ("auto", "cuda"):
        if option == "cuda" or torch.cuda.is_available():
            count = torch.cuda.device_count()
            if count == 0:
                return resolve_device("cuda")  # the error naming the missing GPU
            if count == 1:  # one GPU visible per task (e.g. srun --gpus-per-task=1)
                return torch.device("cuda", 0)
            if processes.local_rank >= count:
                raise RuntimeError(f"local rank {processes.local_rank} has no GPU: torch sees {count} CUDA "
                                   "device(s) on this node; start at most that many processes per node")
            return torch.device("cuda", processes.local_rank)
        return torch.device("cpu")
    device = resolve_device(option)
    if device.type == "cuda" and device.index is not None:
        raise ValueError(f"device {option!r} would put every one of the {processes.world_size} processes on "
                         "the same GPU: use device 'cuda' (each rank takes cuda:LOCAL_RANK)")
    return device


def start(processes: Processes, device: torch.device, timeout_s: float) -> None:
    """Join the process group (NCCL for CUDA, gloo for the CPU); nothing for one process."""
    import torch.distributed as dist

    if not processes.distributed or dist.is_initialized():
        return
    for key, value in rendezvous_environment(processes).items():
        os.environ.setdefault(key, value)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://",
                            rank=processes.rank, world_size=processes.world_size,
                            timeout=datetime.timedelta(seconds=float(timeout_s)))


def stop() -> None:
    """Leave the process group, all ranks together (none tears down while others still talk)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def leave_after_error(code: int) -> None:
    """End a rank of a data-parallel run that failed, at once: the other ranks may be waiting in a
    collective that will never complete, and tearing the process group down (or letting the
    interpreter do so at exit) can wait for them. torchrun sees the exit code, stops the other
    ranks and reports this one. Returns for a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (the tensor on the rank's device); returns it."""
    if _active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_sum_async(tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Starts the sum over ranks (in place); the returned function waits for it and returns the
    tensor, so that the communication overlaps the work in between."""
    if not _active():
        return lambda: tensor
    import torch.distributed as dist

    work = dist.all_reduce(tensor, op=dist.ReduceOp.SUM, async_op=True)
    state = {"done": False}

    def wait() -> torch.Tensor:
        if not state["done"]:
            work.wait()
            state["done"] = True
        return tensor

    return wait


def all_gather(obj: Any) -> List[Any]:
    """[obj of rank 0, obj of rank 1, ...] (picklable objects)."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s obj on every rank."""
    if not _active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()
