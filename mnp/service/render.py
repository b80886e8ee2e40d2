"""AWS Batch output shapes (JobDetail, JobSummary, queue and environment details)."""

from __future__ import annotations

from typing import Any

from mnp.build.environment import SLURM_TASK_IDS, slurm_task_id
from mnp.config import network_kind
from mnp.scheduler.state import NodeRuntime
from mnp.service.users import owner_name
from mnp.spec.arns import job_arn, queue_arn, shown
from mnp.spec.definitions import JobExtras
from mnp.spec.environments import ComputeEnvironment, JobQueue, Node, SchedulingPolicy
from mnp.spec.jobs import Attempt, Job


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def job_detail(job: Job) -> dict[str, Any]:
    """AWS's JobDetail, plus mnp's own fields (the AWS door takes those out)."""
    spec = job.spec
    current = job.current_attempt
    detail: dict[str, Any] = _drop_none(
        {
            "jobArn": job_arn(job.job_id),
            "jobName": spec.name,
            "jobId": job.job_id,
            **_numbers(job),
            "jobQueue": queue_arn(spec.queue),
            "status": job.status.value,
            "statusReason": job.status_reason,
            "shareIdentifier": spec.share_identifier,
            "schedulingPriority": spec.scheduling_priority,
            "createdAt": job.created_at,
            "startedAt": job.started_at,
            "stoppedAt": job.stopped_at,
            "dependsOn": [d.to_wire() for d in spec.depends_on],
            "jobDefinition": shown(spec.definition_arn),
            "parameters": spec.parameters,
            "container": _container(job),
            "attempts": [
                _attempt_detail(a, job.node_index is not None)
                for a in job.attempts
                if a.stopped_at is not None
            ],
            "retryStrategy": spec.retry.to_wire(),
            "timeout": {"attemptDurationSeconds": spec.timeout_seconds}
            if spec.timeout_seconds
            else None,
            "tags": spec.tags or None,
            "propagateTags": spec.propagate_tags or None,
            "platformCapabilities": spec.platform_capabilities,
            "isCancelled": job.is_cancelled,
            "isTerminated": job.is_terminated,
            # an extra member on both wires (botocore ignores members its model lacks)
            "submittedBy": job.submitted_by or owner_name(),
            # mnp's own fields
            "jobQueueName": spec.queue,
            "computeEnvironment": current.compute_environment if current else None,
            "nodeId": current.node_id if current else None,
            "nodeAddress": current.address if current else None,
            "history": [
                {"status": h.status.value, "at": h.at, "reason": h.reason} for h in job.history
            ],
            "mnp": _extras_detail(spec.extras),
        }
    )
    array = _array_properties(job)
    if array:
        detail["arrayProperties"] = array
    nodes = job.spec.nodes
    if nodes is not None and job.node_index is None:
        detail["nodeProperties"] = nodes.to_wire()
        # how the main node starts MPI, and its slots per node (None: each node's vCPUs)
        detail["nodeProperties"]["mnp"] = _drop_none(
            {"mpi": nodes.mpi, "tasksPerNode": nodes.tasks_per_node}
        )
    elif nodes is not None:
        detail["nodeDetails"] = {
            "nodeIndex": job.node_index,
            "isMainNode": job.node_index == nodes.main_node,
        }
    return detail


def _extras_detail(extras: JobExtras) -> dict[str, Any] | None:
    """What the submitter's ``mnp`` object said about where the job runs and writes (for
    ``scontrol show job``'s WorkDir, StdOut, StdErr); None when it said none of it."""
    fields = _drop_none({
        "workingDirectory": extras.workdir, "submitDir": extras.submit_dir,
        "stdout": extras.stdout, "stderr": extras.stderr,
        "script": True if extras.script is not None else None,
        "scriptPath": extras.script_path,
    })  # fmt: skip
    return fields or None


def _container(job: Job) -> dict[str, Any]:
    """The job's container, with its current attempt's exit code, reason and log stream."""
    container = job.container.to_wire()
    current = job.current_attempt
    if current is not None:
        log_stream = current.log_stream_name if current.started_at else None
        container.update(
            _drop_none(
                {
                    "exitCode": current.exit_code,
                    "reason": current.reason,
                    "logStreamName": log_stream,
                }
            )
        )
        if job.node_index is not None and current.address:
            container["networkInterfaces"] = network_interfaces(current)
    return container


def network_interfaces(a: Attempt) -> list[dict[str, str]]:
    """A node job's attempt's interface as AWS shows it (one ENI, its node's address)."""
    return [{"attachmentId": f"mnp-{a.node_id}", "privateIpv4Address": a.address}]


def _attempt_detail(a: Attempt, node_job: bool = False) -> dict[str, Any]:
    """One finished attempt, as AWS's AttemptDetail (a node job's with its interface)."""
    container: dict[str, Any] = {
        "exitCode": a.exit_code, "reason": a.reason, "logStreamName": a.log_stream_name
    }  # fmt: skip
    if node_job and a.address:
        container["networkInterfaces"] = network_interfaces(a)
    return _drop_none(
        {
            "container": _drop_none(container),
            "startedAt": a.started_at,
            "stoppedAt": a.stopped_at,
            "statusReason": a.status_reason,
        }
    )


def _numbers(job: Job) -> dict[str, int]:
    """mnp's integer ids (:mod:`mnp.service.jobrefs`): ``jobNumber``, the job's own, and for
    an array child ``arrayJobNumber``, its array's (Slurm shows it as ``<array>_<task>``).
    Neither for a job stored before heads numbered jobs."""
    if job.number is None:
        return {}
    out = {"jobNumber": job.number}
    if job.array_index is not None and job.spec.number is not None:
        out["arrayJobNumber"] = job.spec.number
    return out


def _array_properties(job: Job) -> dict[str, Any] | None:
    size = job.spec.array_size
    if size is None:
        return None
    if job.parent_id is None:
        return _drop_none(
            {
                "statusSummary": job.status_summary or {},
                "statusSummaryLastUpdatedAt": job.summary_updated_at,
                "size": size,
            }
        )
    out: dict[str, Any] = {"index": job.array_index, "size": size}
    if SLURM_TASK_IDS in job.container.environment:  # mnp sbatch --array listed other ids
        out["taskId"] = slurm_task_id(job)
    return out


def job_summary(job: Job) -> dict[str, Any]:
    current = job.current_attempt
    out: dict[str, Any] = _drop_none(
        {
            "jobArn": job_arn(job.job_id),
            "jobId": job.job_id,
            **_numbers(job),
            "jobName": job.spec.name,
            "createdAt": job.created_at,
            "startedAt": job.started_at,
            "stoppedAt": job.stopped_at,
            "status": job.status.value,
            "statusReason": job.status_reason,
            "shareIdentifier": job.spec.share_identifier,
            "jobDefinition": shown(job.spec.definition_arn),
            "container": _drop_none({"exitCode": current.exit_code, "reason": current.reason})
            if current and current.stopped_at
            else None,
            "jobQueueName": job.spec.queue,
            "nodeId": current.node_id if current else None,
            "attempt": len(job.attempts),
            "user": job.spec.extras.user,
            "submittedBy": job.submitted_by or owner_name(),
            "arrayJobId": job.parent_id if job.array_index is not None else None,
        }
    )
    if job.is_cancelled:
        out["isCancelled"] = True
    if job.is_terminated:
        out["isTerminated"] = True
    if job.gang:
        out["nodeIds"] = [job.gang[k] for k in sorted(job.gang, key=int)]
    elif current is not None:
        out["nodeIds"] = [current.node_id]
    array = _array_properties(job)
    if array:
        out["arrayProperties"] = array
    nodes = job.spec.nodes
    if nodes is not None:
        out["nodeProperties"] = {"numNodes": nodes.num_nodes}
        if job.node_index is not None:
            out["nodeProperties"].update(
                {"nodeIndex": job.node_index, "isMainNode": job.node_index == nodes.main_node}
            )
    return out


def queue_detail(q: JobQueue) -> dict[str, Any]:
    policy = (
        {"schedulingPolicyArn": shown(q.scheduling_policy_arn)} if q.scheduling_policy_arn else {}
    )
    return {
        "jobQueueName": q.name,
        "jobQueueArn": q.arn,
        **policy,
        "state": q.state.value,
        "status": "VALID",
        "statusReason": "JobQueue Healthy",
        "priority": q.priority,
        "computeEnvironmentOrder": [
            {
                "order": o,
                "computeEnvironment": f"{q.arn.split(':job-queue/')[0]}:compute-environment/{n}",
            }
            for o, n in sorted(q.compute_environment_order)
        ],
        "tags": q.tags,
        "jobStateTimeLimitActions": q.time_limit_actions,
    }


def policy_detail(p: SchedulingPolicy) -> dict[str, Any]:
    return {"name": p.name, "arn": p.arn, "fairsharePolicy": p.fairshare, "tags": p.tags}


def ce_detail(ce: ComputeEnvironment, nodes: list[Node]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "computeEnvironmentName": ce.name,
        "computeEnvironmentArn": ce.arn,
        "type": ce.type,
        "state": ce.state.value,
        "status": ce.status.value,
        "statusReason": ce.status_reason
        or {"CREATING": "Creating", "UPDATING": "Updating", "DELETING": "Deleting"}.get(
            ce.status.value, "ComputeEnvironment Healthy"
        ),
        "tags": ce.doc.get("tags") or {},
        "mnp": {
            "provider": ce.provider,
            "nodes": ce.node_count,
            "vcpus": int(ce.node_resources.vcpus),
            "memoryMiB": ce.node_resources.memory_mib,
            "gpus": ce.node_resources.gpus,
            "firstAddress": ce.first_address,
            **({"sharedFilesystem": ce.shared_filesystem.to_doc()} if ce.shared_filesystem else {}),
            "activeNodes": sum(1 for n in nodes if n.status.value == "ACTIVE"),
            "minNodes": ce.min_nodes,
            "desiredNodes": ce.desired_nodes,
        },
    }
    for key in ("computeResources", "serviceRole", "unmanagedvCpus"):
        if ce.doc.get(key) is not None:
            out[key] = ce.doc[key]
    given = ce.doc.get("computeResources")
    if isinstance(given, dict) and ce.type == "MANAGED":  # kept current, as AWS does
        desired = ce.desired_vcpus if ce.ec2 else ce.desired_nodes * int(ce.node_resources.vcpus)
        most = given.get("maxvCpus")
        if isinstance(most, int) and not isinstance(most, bool):
            desired = min(desired, most)
        out["computeResources"] = {**given, "desiredvCpus": desired}
    return out


def node_detail(node: Node, rt: NodeRuntime | None) -> dict[str, Any]:
    used = rt.used if rt else None
    free = node.capacity.minus(used) if used else node.capacity
    return _drop_none(
        {
            "nodeId": node.node_id,
            "computeEnvironment": node.compute_environment,
            "address": node.address,
            "network": network_kind(node.address),  # loopback alias or its own namespace
            "status": node.status.value,
            "statusReason": node.status_reason,
            "vcpus": node.capacity.vcpus,
            "memoryMiB": node.capacity.memory_mib,
            "gpus": node.capacity.gpus,
            "freeVcpus": free.vcpus,
            "freeMemoryMiB": free.memory_mib,
            "freeGpus": free.gpus,
            "runningJobs": sorted({j.job_id for j in rt.running.values()}) if rt else [],
            "lastHeartbeatAt": node.last_heartbeat_ms or None,
            "pid": node.pid,
            "draining": node.draining or None,
            "instanceId": node.instance_id,
            "instanceType": node.instance_type,
            "availabilityZone": node.zone,
        }
    )
