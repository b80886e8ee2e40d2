#!/bin/bash
# Records real Slurm's output, in the formats tools parse, as tests/golden/slurm/*.txt:
# tests/unit/test_slurm_golden.py compares mnp's sbatch/squeue/sacct/scontrol/sinfo output
# with them, format for format (ids, times and host names normalised).
#
# How: on a Debian 12 machine (or container) where you are root,
#     apt-get install -y slurm-wlm slurmdbd mariadb-server
#     scripts/slurm-golden.sh [OUTDIR]          # default tests/golden/slurm
# It starts, under $WORK (default /tmp/slurm-cmp, removed at the end), a private munged,
# MariaDB (loopback port 13306), slurmdbd, slurmctld and one slurmd (NodeName=localhost,
# CPUs=2, partition debug Default=YES), runs a batch script, a job array 0-3, a failing
# job, a cancelled job and a held job, captures each command's stdout byte for byte, then
# stops every daemon it started (by PID). CI does not need Slurm: the files are committed.
# Recorded with slurm-wlm 22.05.8 (Debian 12).
set -euo pipefail

OUT=$(realpath -m "${1:-$(dirname "$0")/../tests/golden/slurm}")
WORK=${WORK:-/tmp/slurm-cmp}
[ "$(id -u)" = 0 ] || { echo "slurm-golden.sh: run as root" >&2; exit 1; }
for cmd in slurmctld slurmd slurmdbd munged mariadbd sbatch; do
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] ||
        { echo "slurm-golden.sh: $cmd missing (apt-get install slurm-wlm slurmdbd mariadb-server)" >&2; exit 1; }
done
[ -e "$WORK" ] && { echo "slurm-golden.sh: $WORK exists; remove it or set WORK" >&2; exit 1; }
mkdir -p "$WORK"/{munge,state,spool,log,run,db,jobs} "$OUT"
export SLURM_CONF=$WORK/slurm.conf PATH=/usr/sbin:$PATH
PIDS=()

stop() {
    local rc=$? pid
    if [ "$rc" != 0 ]; then tail -n 5 "$WORK"/log/*.log "$WORK"/munge/*.log >&2 || true; fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$WORK"
}
trap stop EXIT

# until [deadline in s] command...: poll, fail after the deadline
until_ok() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { echo "slurm-golden.sh: timed out waiting for: $*" >&2; "$@" >&2; exit 1; }
        sleep 0.2
    done
}
pid_of() { until_ok 30 test -s "$1"; cat "$1"; }

# -- daemons -----------------------------------------------------------------------------------
chown munge:munge "$WORK/munge"
mungekey -c -k "$WORK/munge/munge.key"
chown munge:munge "$WORK/munge/munge.key"
runuser -u munge -- munged --socket="$WORK/munge/munge.sock" --key-file="$WORK/munge/munge.key" \
    --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" \
    --seed-file="$WORK/munge/munged.seed"
PIDS+=("$(pid_of "$WORK/munge/munged.pid")")

mariadb-install-db --user=root --datadir="$WORK/db" --auth-root-authentication-method=normal \
    >"$WORK/log/db-install.log" 2>&1
mariadbd --user=root --datadir="$WORK/db" --socket="$WORK/run/mysql.sock" \
    --pid-file="$WORK/run/mariadb.pid" --bind-address=127.0.0.1 --port=13306 \
    >"$WORK/log/mariadb.log" 2>&1 &
PIDS+=("$!")
until_ok 60 mariadb -S "$WORK/run/mysql.sock" -uroot -e "select 1"
mariadb -S "$WORK/run/mysql.sock" -uroot -e "create user 'slurm'@'127.0.0.1' identified by 'pw';
    grant all on slurm_acct_db.* to 'slurm'@'127.0.0.1';"

cat >"$WORK/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.sock
DbdHost=localhost
DbdPort=16819
SlurmUser=root
LogFile=$WORK/log/slurmdbd.log
PidFile=$WORK/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=13306
StorageUser=slurm
StoragePass=pw
StorageLoc=slurm_acct_db
EOF
chmod 600 "$WORK/slurmdbd.conf"
cat >"$WORK/slurm.conf" <<EOF
ClusterName=cmp
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.sock
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
AccountingStoragePass=$WORK/munge/munge.sock
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
slurmdbd
PIDS+=("$(pid_of "$WORK/run/slurmdbd.pid")")
until_ok 60 sacctmgr -i list cluster
sacctmgr -i add cluster cmp >/dev/null
slurmctld
PIDS+=("$(pid_of "$WORK/run/slurmctld.pid")")
slurmd -N localhost
PIDS+=("$(pid_of "$WORK/run/slurmd.pid")")
until_ok 60 sh -c 'sinfo -h -o %t | grep -qx idle'

# -- captures ----------------------------------------------------------------------------------
: >"$OUT/MANIFEST"
# cap NAME COMMAND...: the command's stdout byte for byte as NAME.txt, listed in MANIFEST
cap() {
    local name=$1; shift
    (cd "$WORK/jobs" && "$@") >"$OUT/$name.txt"
    printf '%s.txt\t%s\n' "$name" "$*" >>"$OUT/MANIFEST"
}
SQ_ALL="%i|%A|%F|%K|%P|%j|%u|%t|%T|%M|%D|%R|%N|%r|%l|%V|%S"
SA_ALL="JobID,JobIDRaw,JobName,Partition,User,State,ExitCode,Elapsed,ElapsedRaw,NodeList,NNodes,Submit,Start,End,Reason,Timelimit"
SI_ALL="%P|%R|%a|%l|%L|%D|%t|%T|%N|%n|%c|%m|%G|%F|%C"

cap sinfo-idle sinfo
printf '#!/bin/sh\n#SBATCH -J batchjob\nsleep 600\n' >"$WORK/jobs/job.sh"
cap sbatch sbatch job.sh                                   # runs
RUN=$(awk '{print $4}' "$OUT/sbatch.txt")
cap sbatch-parsable sbatch --parsable -t 10 job.sh         # runs; cancelled later
CAN=$(cat "$OUT/sbatch-parsable.txt")
cap sbatch-array sbatch --array=0-3 -J arr --wrap 'sleep 1'  # waits for a CPU
ARR=$(awk '{print $4}' "$OUT/sbatch-array.txt")
cap sbatch-held-parsable sbatch --parsable --hold -J held --wrap true
HELD=$(cat "$OUT/sbatch-held-parsable.txt")
FAIL=$(cd "$WORK/jobs" && sbatch --parsable -J fails -o 'fails-%j.out' -e 'fails-%x.err' --wrap 'exit 3')
export RUN CAN ARR HELD FAIL
until_ok 60 sh -c '[ "$(squeue -h -t R -o %i | wc -l)" = 2 ]'
until_ok 60 sh -c 'squeue -h -j $ARR -o %r | grep -qx Resources'
cap squeue-pending squeue
cap squeue-pending-r squeue -r
cap squeue-pending-fields squeue -o "$SQ_ALL"
cap squeue-pending-fields-r squeue -r -o "$SQ_ALL"
cap squeue-h-itj squeue -h -o "%i %t %j"
cap scontrol-job-held scontrol show job $HELD
cap scontrol-job-pending-array scontrol show job $ARR
cap scontrol-job-pending-array-o scontrol show job -o $ARR

scancel $CAN
until_ok 120 sh -c '[ "$(squeue -h -o %i | sort | tr "\n" " ")" = "$RUN $HELD " ]'
until_ok 120 sh -c 'sacct -n -X -j $FAIL -o State%20 | grep -q FAILED'
until_ok 120 sh -c 'sacct -n -X -j $CAN -o State%20 | grep -q CANCELLED'
until_ok 120 sh -c '[ "$(sacct -n -X -j $ARR -o State | grep -c COMPLETED)" = 4 ]'
cap squeue-running squeue
cap squeue-running-fields squeue -o "$SQ_ALL"
cap squeue-widths squeue -o "%.3i %5j %.1t %10P %5M %.10l"
cap squeue-h-itj-running squeue -h -o "%i %t %j"
cap squeue-state-codes squeue -h -t all -o "%i %t %T"
cap sacct-default sacct -X
cap sacct-table sacct -X --format=JobID,JobName,State,ExitCode,Elapsed,NodeList
cap sacct-fields-P sacct -P -X --format="$SA_ALL"
cap sacct-fields-Pn sacct -P -n -X --format="$SA_ALL"
cap sacct-fields-p sacct -p -X --format="$SA_ALL"
cap sacct-fields-table sacct -X --format="$SA_ALL"
cap sacct-widths sacct -X --format=JobID%5,JobName%3,State%20,ExitCode
cap sacct-Pn-jse sacct -P -n -X --format=JobID,State,ExitCode
cap scontrol-job-running scontrol show job $RUN
cap scontrol-job-running-o scontrol show job -o $RUN
cap scontrol-job-array-task scontrol show job ${ARR}_0
cap scontrol-job-array-task-o scontrol show job -o ${ARR}_0
cap scontrol-job-failed scontrol show job $FAIL
cap scontrol-job-failed-o scontrol show job -o $FAIL
cap scontrol-job-cancelled-o scontrol show job -o $CAN
cap scontrol-hostnames scontrol show hostnames 'localhost,node[1-3],gpu[08-10]'
cap scontrol-hostlist scontrol show hostlist node1,node2,node3,gpu08,gpu09,gpu10
cap scontrol-node scontrol show node localhost
cap scontrol-node-o scontrol show node -o localhost
cap scontrol-partition scontrol show partition debug
cap scontrol-partition-o scontrol show partition -o debug
cap sinfo-mix sinfo
cap sinfo-N sinfo -N
cap sinfo-h-PaDc sinfo -h -o "%P %a %D %c"
cap sinfo-fields sinfo -o "$SI_ALL"
cap sinfo-widths sinfo -o "%10P %.3a %5D %.8t %N"
scancel $RUN $HELD
until_ok 60 sh -c '[ -z "$(squeue -h -o %i)" ]'
sinfo --version >"$OUT/VERSION"
echo "slurm-golden.sh: wrote $(wc -l <"$OUT/MANIFEST") files to $OUT"
