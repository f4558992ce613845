#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for testing the slurm job backend for real
# (Debian: apt-get install slurm-wlm; run as root). Nothing system-wide is touched: the
# configuration, state and logs live in ${SLURM_TEST_DIR}, and every Slurm command must see
# SLURM_CONF=${SLURM_TEST_DIR}/slurm.conf (printed by `start`).
#
#   eval "$(local/slurm_localhost.sh start)"   # starts slurmctld + slurmd, exports SLURM_CONF
#   local/slurm_localhost.sh stop
set -euo pipefail
dir="${SLURM_TEST_DIR:-/tmp/espnet_peft_slurm}"
action="${1:-start}"
conf="${dir}/slurm.conf"
host="$(hostname -s)"

stop() {
    for d in slurmd slurmctld; do
        if [ -f "${dir}/${d}.pid" ]; then
            kill "$(cat "${dir}/${d}.pid")" 2>/dev/null || true
            rm -f "${dir}/${d}.pid"
        fi
    done
}

case "${action}" in
    start)
        for b in slurmctld slurmd sbatch sinfo; do
            command -v "${b}" >/dev/null || { echo "slurm_localhost.sh: ${b} not found (apt-get install slurm-wlm)" >&2; exit 1; }
        done
        [ "$(id -u)" -eq 0 ] || { echo "slurm_localhost.sh: must run as root" >&2; exit 1; }
        stop
        mkdir -p "${dir}/state" "${dir}/spool" "${dir}/log"
        cat > "${conf}" <<CONF
ClusterName=espnetpeft
SlurmctldHost=${host}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
SlurmctldPort=${SLURM_TEST_PORT:-6917}
SlurmdPort=$(( ${SLURM_TEST_PORT:-6917} + 1 ))
NodeName=${host} CPUs=$(nproc) RealMemory=$(( $(free -m | awk '/Mem:/ {print $2}') / 2 )) State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
        export SLURM_CONF="${conf}"
        slurmctld -f "${conf}" -i
        slurmd -f "${conf}"
        for _ in $(seq 1 30); do
            if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
                echo "export SLURM_CONF=${conf}"
                exit 0
            fi
            sleep 1
        done
        echo "slurm_localhost.sh: the node did not come up; logs in ${dir}/log" >&2
        exit 1
        ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 1 ;;
esac
