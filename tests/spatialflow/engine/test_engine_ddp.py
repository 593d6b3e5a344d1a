"""DDP equivalence: 2 processes (torchrun, gloo) x 1 image == 1 process x 2 images, same global batch.

Run as a script by torchrun, this file is the worker (with src/ and tests/ on PYTHONPATH, for ``spatialflow``
and ``helpers``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from helpers.paths import REPO_ROOT
from helpers.toy import toy_config, toy_factories

RECIPE = {"length": 6, "decay_steps": [4], "checkpoint_every": 3, "log_every": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_on_the_same_global_batch(tmp_path):
    from spatialflow.engine import checkpoint as ckpt
    from spatialflow.engine.trainer import train

    torch.set_num_threads(1)
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT / 'tests'}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), __file__, str(tmp_path / "ddp")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]

    # The same 6 iterations in one process, global batch 2 (no augmentation: each process has its own RNG).
    single = train(toy_config(tmp_path / "single", **RECIPE), **toy_factories(flip=False))
    a = ckpt.load_checkpoint(single.final_model)["model"]
    b = ckpt.load_checkpoint(tmp_path / "ddp" / "model_final.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    initial = ckpt.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "checkpoint_00000003.pt")["model"]
    assert not torch.allclose(initial["head.weight"], b["head.weight"])  # it trained past iteration 3
    # rank 0 alone wrote checkpoints, with both processes' RNG states
    ddp_state = ckpt.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "checkpoint_00000006.pt")
    assert len(ddp_state["rng"]) == 2


def _worker(output_dir: str) -> None:
    from spatialflow.engine.distributed import cleanup
    from spatialflow.engine.trainer import train

    torch.set_num_threads(1)
    result = train(toy_config(output_dir, **RECIPE), **toy_factories(flip=False))
    assert result.iterations == 6
    cleanup()


if __name__ == "__main__":
    _worker(sys.argv[1])
