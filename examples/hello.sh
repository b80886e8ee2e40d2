#!/usr/bin/env bash
# A standard job: says which job it is and where it ran.
# The node agent sets the AWS_BATCH_* variables (as AWS Batch does) and MNP_NODE_*.
set -euo pipefail
echo "${GREETING:-hello}: job ${AWS_BATCH_JOB_ID:-?} ran on node ${MNP_NODE_ID:-?}" \
     "(${MNP_NODE_ADDRESS:-$(hostname)}) in compute environment ${AWS_BATCH_CE_NAME:-?}"
echo "attempt ${AWS_BATCH_JOB_ATTEMPT:-?}, queue ${AWS_BATCH_JQ_NAME:-?}," \
     "host $(hostname), working directory ${PWD}"
