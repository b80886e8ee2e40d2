"""A job-spec file: an array job of 6 children, then a job that runs after the whole array.

    mnp submit examples/pipeline.py --wait

``JOB_DEFINITIONS`` are registered first; ``{"jobId": "@squares"}`` names the job submitted
earlier in this file, and becomes its id at submit time.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def definition(name: str, script: str) -> dict[str, object]:
    """A process job running ``bash <script>`` (absolute: jobs run in their own directories)."""
    return {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {
            "command": ["bash", str(HERE / script)],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "256"},
            ],
        },
    }


JOB_DEFINITIONS = [
    definition("squares", "square.sh"),
    definition("after-squares", "after-array.sh"),
]

JOBS = [
    {
        "jobName": "squares",
        "jobDefinition": "squares",
        "arrayProperties": {"size": 6},
    },
    {
        "jobName": "after-squares",
        "jobDefinition": "after-squares",
        "dependsOn": [{"jobId": "@squares"}],
        "containerOverrides": {"environment": [{"name": "AFTER", "value": "squares"}]},
    },
]
