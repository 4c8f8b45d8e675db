"""Train the tiny stand-in with a checkpoint every step and die abruptly inside the N-th save.

``python fault_worker.py OUT POINT N``: POINT is where the process is killed (``os._exit``, no
clean-up) during the N-th call of :func:`bidrn.engine.checkpoint.save_checkpoint`:

* ``write`` — half of the temporary file written;
* ``fsync`` — temporary file complete, not yet synced;
* ``replace`` — synced, not yet renamed over the checkpoint;
* ``directory`` — renamed, directory not yet synced.
"""

import os
import sys
from pathlib import Path

from bidrn.engine import checkpoint
from tests.engine.test_trainer import tiny_trainer

KILLED = 9


def main(out: str, point: str, save_number: int) -> None:
    calls = {"save": 0}
    real_save, real_fsync, real_replace, real_sync_dir = (
        checkpoint.save_file, os.fsync, os.replace, checkpoint._fsync_directory
    )  # fmt: skip

    def armed(stage: str) -> bool:
        return point == stage and calls["save"] == save_number

    def save(tensors, filename, metadata=None):
        calls["save"] += 1
        real_save(tensors, filename, metadata=metadata)
        if armed("write"):
            size = Path(filename).stat().st_size
            os.truncate(filename, size // 2)
            os._exit(KILLED)

    def fsync(descriptor):
        if armed("fsync"):
            os._exit(KILLED)
        real_fsync(descriptor)

    def replace(source, destination):
        if armed("replace"):
            os._exit(KILLED)
        real_replace(source, destination)

    def sync_directory(directory):
        if armed("directory"):
            os._exit(KILLED)
        real_sync_dir(directory)

    checkpoint.save_file = save
    checkpoint.os.fsync = fsync
    checkpoint.os.replace = replace
    checkpoint._fsync_directory = sync_directory
    tiny_trainer(Path(out), "run", checkpoint_every_steps=1).fit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
