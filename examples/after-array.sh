#!/usr/bin/env bash
# Depends on a whole array job: the head starts it only after every child SUCCEEDED.
set -euo pipefail
echo "ran after array job ${AFTER:-?} finished" \
     "(job ${AWS_BATCH_JOB_ID:-?}, node ${MNP_NODE_ID:-?} ${MNP_NODE_ADDRESS:-$(hostname)})"
