"""`hienet-train CONFIG.yaml`: train a HIENet model (or fine-tune one) on extxyz data.

Examples::

    hienet-train examples/train/si_demo.yaml
    hienet-train examples/train/si_demo.yaml --resume          # continue after an interruption
    hienet-train my.yaml --init-checkpoint HIENet-V3.pth       # fine-tune an official checkpoint
    torchrun --nproc_per_node 4 --no-python hienet-train my.yaml   # data parallel, 4 GPUs or processes
    srun --ntasks-per-node 4 hienet-train my.yaml              # data parallel under Slurm
    hienet-train --print-defaults                              # every option with its default
"""
import argparse
import os
import sys
import time
import traceback


def _error_text(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)  # no repr quotes
    if "DataLoader worker" in message:  # a worker's error: its own last line names the structure
        message = message.strip().splitlines()[-1].split(": ", 1)[-1]
    return message


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="hienet-train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("config", nargs="?", help="YAML training config")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/checkpoint_last.pth (optimizer, schedule, EMA, RNG)")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--epochs", type=int, help="override epochs")
    parser.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--init-checkpoint", help="fine-tune from this checkpoint (ours or official)")
    parser.add_argument("--seed", type=int, help="override seed")
    parser.add_argument("--num-workers", type=int,
                        help="override num_workers (DataLoader processes per rank reading and building graphs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one log line per epoch)")
    parser.add_argument("--print-defaults", action="store_true", help="print the default config and exit")
    args = parser.parse_args(argv)

    from .config import TRAIN_DEFAULTS, dump_config, load_config

    if args.print_defaults:
        print(dump_config(TRAIN_DEFAULTS), end="")
        return 0
    if not args.config:
        parser.error("a YAML config is required (see --print-defaults)")
    config = load_config(args.config)
    for key in ("output_dir", "epochs", "device", "init_checkpoint", "seed", "num_workers"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if args.init_checkpoint is not None:
        config.pop("model", None)
    if args.no_progress:
        config["progress"] = False

    from . import distributed
    from .trainer import Trainer, TrainingDiverged

    rank = distributed.detect().rank if _environment_ok() else 0
    prefix = "hienet-train: error: " if rank == 0 else f"hienet-train (rank {rank}): error: "

    def failed(code: int, err: BaseException = None) -> int:
        if err is not None:
            print(prefix + _error_text(err), file=sys.stderr)
        distributed.leave_after_error(code)  # returns only for a single process
        return code

    try:
        trainer = Trainer(config, resume=args.resume)
    except (ValueError, KeyError, FileNotFoundError, TypeError, RuntimeError) as err:
        return failed(2, err)
    try:
        summary = trainer.fit()
    except TrainingDiverged as err:  # every rank stops at the same step; rank 0 reports it
        return failed(1, err if rank == 0 else None)
    except (ValueError, FileNotFoundError) as err:  # bad data met while streaming
        return failed(2, err)
    except Exception as err:  # e.g. a collective that failed because another rank died
        if not trainer.processes.distributed:
            raise
        traceback.print_exc()
        first_line = (str(err).strip().splitlines() or [""])[0]
        print(f"{prefix}training stopped at epoch {trainer.epoch}, step {trainer.step + 1}: "
              f"{type(err).__name__}: {first_line} (when another process of the run failed first, "
              f"torchrun's report or the srun log names it)", file=sys.stderr, flush=True)
        # a collective fails on every rank once one rank dies: give the launcher the time to see
        # that rank first (torchrun checks every 0.1 s and then stops this one), so that its
        # report names the rank that failed as the root cause, not the ranks that waited for it
        time.sleep(3.0)
        _record_for_torchrun(err)
        return failed(1)
    trainer.close()
    distributed.stop()
    if rank == 0:
        print(f"done: {summary['epoch']} epochs, best epoch {summary['best_epoch']} "
              f"({trainer.cfg['best_metric']} {summary['best_value']:.6g}); checkpoints in {summary['output_dir']}",
              file=sys.stderr)
    return 0


def _environment_ok() -> bool:
    from . import distributed

    try:
        distributed.detect()
        return True
    except ValueError:
        return False  # the Trainer reports it


def _record_for_torchrun(err: BaseException) -> None:
    """Writes the error where torchrun reports it per rank (its TORCHELASTIC_ERROR_FILE)."""
    if "TORCHELASTIC_ERROR_FILE" in os.environ:
        from torch.distributed.elastic.multiprocessing.errors import get_error_handler

        get_error_handler().record_exception(err)


main = _main


if __name__ == "__main__":
    sys.exit(main())
