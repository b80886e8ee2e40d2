#!/usr/bin/env bash
# One child of an array job: squares its own index and writes the result to stdout.
set -euo pipefail
i="${AWS_BATCH_JOB_ARRAY_INDEX:?this script runs as an array child}"
if [[ ! "$i" =~ ^[0-9]+$ ]]; then
    echo "AWS_BATCH_JOB_ARRAY_INDEX is not a number: $i" >&2
    exit 2
fi
sleep 0.2  # long enough to watch the progress bar move
echo "index ${i} of ${AWS_BATCH_JOB_ARRAY_SIZE:-?}: ${i}^2 = $((i * i))" \
     "(node ${MNP_NODE_ID:-?} ${MNP_NODE_ADDRESS:-$(hostname)})"
