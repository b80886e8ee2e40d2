"""The environment every job attempt sees — one contract for every provider.

Pure: built from the job, the attempt and the node; no I/O.
"""

from __future__ import annotations

from mnp.model import Attempt, Job


def job_environment(job: Job, attempt: Attempt) -> dict[str, str]:
    """AWS Batch's variables, the Slurm names ported scripts read, then the job's own.

    The job's environment cannot override ``AWS_BATCH_*`` names (they are refused at submit).
    """
    spec = job.spec
    env: dict[str, str] = dict(job.container.environment)
    env.update(
        {
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt.number),
            "AWS_BATCH_JQ_NAME": spec.queue,
            "AWS_BATCH_CE_NAME": attempt.compute_environment,
            "MNP_NODE_ID": attempt.node_id,
            "MNP_NODE_ADDRESS": attempt.address,
            "MNP_LOG_STREAM": attempt.log_stream_name,
            "SLURM_JOB_ID": job.job_id,
            "SLURM_JOB_NAME": spec.name,
            "SLURM_JOB_PARTITION": spec.queue,
            "SLURM_NNODES": "1",
            "SLURM_JOB_NUM_NODES": "1",
            "SLURM_NTASKS": "1",
            "SLURM_NODEID": "0",
            "SLURM_JOB_NODELIST": attempt.node_id,
            "SLURM_RESTART_COUNT": str(attempt.number - 1),
        }
    )
    if job.array_index is not None and spec.array_size is not None and job.parent_id is not None:
        env.update(
            {
                "AWS_BATCH_JOB_ARRAY_INDEX": str(job.array_index),
                "AWS_BATCH_JOB_ARRAY_SIZE": str(spec.array_size),
                "SLURM_ARRAY_JOB_ID": job.parent_id,
                "SLURM_ARRAY_TASK_ID": str(job.array_index),
                "SLURM_ARRAY_TASK_COUNT": str(spec.array_size),
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": str(spec.array_size - 1),
            }
        )
    return env
