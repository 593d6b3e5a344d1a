"""``python -m spatialflow_repro rows`` and ``train-stage``: the pipeline's training stages on several workers.

    python -m spatialflow_repro rows --jobs 2                 # this machine: 2 rows at a time (make repro)
    python -m spatialflow_repro rows --submitit --jobs 8 --timeout-min 720 --workdir /scratch/$USER \\
        --slurm-partition gpu --gpus-per-job 4                # a SLURM cluster, 8 rows at a time
    python -m spatialflow_repro train-stage train@t2_baseline --commit <sha> [--push]   # one worker

See :mod:`spatialflow_repro.workers` (and docs/pipeline.md, "Rows on many machines"). A user error is one
line ``rows: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spatialflow.cli import positive_int
from spatialflow.errors import SpatialFlowError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spatialflow_repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rows = sub.add_parser("rows", help="dvc repro with the training stages on workers")
    rows.add_argument("--jobs", type=positive_int, default=2, help="rows at a time (default: %(default)s)")
    rows.add_argument("--gpus-per-job", type=int, default=0, help="GPUs of each row (default: CPU rows)")
    rows.add_argument("--submitit", action="store_true", help="a SLURM array (submitit; local without SLURM)")
    rows.add_argument("--timeout-min", type=positive_int, default=24 * 60, help="per row, with --submitit")
    rows.add_argument("--workdir", default=None, help="where each job clones the repository (--submitit)")
    rows.add_argument("--runs-dir", default=None, help="shared training working area of the jobs, so that a "
                                                       "job started again resumes (--submitit)")
    rows.add_argument("--logs", default=".dvc/tmp/submitit/%j", help="submitit's folder (--submitit)")
    rows.add_argument("--slurm-partition", default=None)
    stage = sub.add_parser("train-stage", help="a worker: train one stage in this checkout of the head's commit")
    stage.add_argument("stage", help="table1@<row>, train@<row> or train_pretrained@<row>")
    stage.add_argument("--commit", required=True, help="the head's snapshot commit (refs/spatialflow/rows)")
    stage.add_argument("--push", action="store_true", help="pull inputs from / push the row to the DVC remote")
    return parser


def main(argv: list[str]) -> int:
    from spatialflow_repro import workers

    args = _parser().parse_args(argv)
    try:
        if args.command == "train-stage":
            workers.train_stage(Path.cwd(), args.stage, args.commit, push=args.push)
        elif args.submitit:
            slurm = {"slurm_partition": args.slurm_partition} if args.slurm_partition else {}
            if args.gpus_per_job:
                slurm["gpus_per_node"] = args.gpus_per_job
            workers.train_rows_with_submitit(Path.cwd(), args.logs, args.workdir or str(Path.cwd() / ".dvc/tmp"),
                                             args.timeout_min, args.jobs, slurm, args.runs_dir)
        else:
            workers.train_rows_here(Path.cwd(), args.jobs, args.gpus_per_job)
    except SpatialFlowError as error:
        print(f"{args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
