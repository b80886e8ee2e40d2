#!/bin/bash
# mpi-run.sh: launch an MPI application on an AWS Batch multi-node parallel job
BASENAME="${0##*/}"
log () { echo "${BASENAME} - ${1}"; }
HOST_FILE_PATH="/tmp/hostfile"
AWS_BATCH_EXIT_CODE_FILE="/tmp/batch-exit-code"

usage () {
  if [ "${#@}" -ne 0 ]; then log "* ${*}"; echo; fi
  log "Usage: ${BASENAME} <application> [arguments...]"
  error_exit
}
error_exit () { echo "${BASENAME} - ${1}" >&2; echo "${2:-1}" > $AWS_BATCH_EXIT_CODE_FILE; exit 1; }

# Check what environment variables are set
if [ -z "${AWS_BATCH_JOB_NODE_INDEX}" ]; then usage "AWS_BATCH_JOB_NODE_INDEX not set"; fi
if [ -z "${AWS_BATCH_JOB_NUM_NODES}" ]; then usage "AWS_BATCH_JOB_NUM_NODES not set"; fi
if [ -z "${AWS_BATCH_JOB_MAIN_NODE_INDEX}" ]; then usage "AWS_BATCH_JOB_MAIN_NODE_INDEX not set"; fi

# Set child by default, switch to main if on the main node container
NODE_TYPE="child"
if [ "${AWS_BATCH_JOB_MAIN_NODE_INDEX}" == "${AWS_BATCH_JOB_NODE_INDEX}" ]; then
  log "Running synchronize as the main node"
  NODE_TYPE="main"
fi

# wait for all nodes to report
wait_for_nodes () {
  log "Running as master node"
  touch $HOST_FILE_PATH
  ip=$(/sbin/ip -o -4 addr list eth0 | awk '{print $4}' | cut -d/ -f1)
  availablecores=$(nproc)
  log "master details -> $ip:$availablecores"
  echo "$ip slots=$availablecores" >> $HOST_FILE_PATH
  lines=$(sort $HOST_FILE_PATH | uniq | wc -l)
  while [ "$AWS_BATCH_JOB_NUM_NODES" -gt "$lines" ]
  do
    log "$lines out of $AWS_BATCH_JOB_NUM_NODES nodes joined, check again in 1 second"
    sleep 1
    lines=$(sort $HOST_FILE_PATH | uniq | wc -l)
  done
  log "All nodes successfully joined"
  # remove duplicates if there are any.
  awk '!a[$0]++' $HOST_FILE_PATH > ${HOST_FILE_PATH}-deduped
  cat $HOST_FILE_PATH-deduped
  log "executing main MPIRUN workflow"
  /usr/bin/mpirun --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0 \
    --allow-run-as-root --machinefile ${HOST_FILE_PATH}-deduped "$@"
  exit_code=$?
  log "done! goodbye, writing exit code to $AWS_BATCH_EXIT_CODE_FILE and shutting down"
  echo "$exit_code" > $AWS_BATCH_EXIT_CODE_FILE
  exit $exit_code
}

# Fetch and run a script
report_to_master () {
  ip=$(/sbin/ip -o -4 addr list eth0 | awk '{print $4}' | cut -d/ -f1)
  availablecores=$(nproc)
  log "I am a child node -> $ip:$availablecores, reporting to the master node -> ${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS}"
  until echo "$ip slots=$availablecores" | ssh ${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS} "cat >> $HOST_FILE_PATH"
  do
    echo "Sleeping 1 second and trying again"
    sleep 1
  done
  log "done! goodbye"
  tail -f /dev/null
}

# Main - dispatch user request to appropriate function
log $NODE_TYPE
case $NODE_TYPE in
  main) wait_for_nodes "${@}" ;;
  child) report_to_master "${@}" ;;
  *) log $NODE_TYPE; usage "Could not determine node type. Expected (main/child)" ;;
esac
