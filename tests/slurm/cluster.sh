# A throw-away Slurm cluster on this host for the scheduler tests (sourced by tests/slurm/run.sh).
# It runs inside the private PID, mount, network and UTS namespaces run.sh enters, so every daemon
# and job dies with the test, its TCP ports are on a private loopback and its node names resolve
# through a private /etc/hosts. slurmctld and one slurmd per node run in the foreground (-D), with
# everything under $SLURM_TEST_DIR; munge authenticates with a fresh key.
# Nodes n1..nN: node nK's slurmd runs in its own UTS and mount namespaces (hostname nK; its own
# spool, PMIx directory and munged socket bound on $SLURM_TEST_DIR/local), listening on port
# 6817+K, with CPUS cpus and GPUS gpus (stand-in device files: the CPU build ignores them). Debian's
# build does have --enable-multiple-slurmd (its auth_munge.so carries that mode's replay message),
# but slurmd processes sharing one /tmp and spool collide in PMIx's per-step directories.

cluster_log() { echo "slurm-test: $*"; }

# cluster_wait DEADLINE_S CMD...: polls CMD every 0.5 s until it succeeds or the deadline passes
cluster_wait() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

cluster_start() {   # cluster_start NODES CPUS GPUS
  local nodes=$1 cpus=$2 gpus=$3 d=$SLURM_TEST_DIR
  mkdir -p "$d"/{munge,state,log,etc}
  # glibc's getaddrinfo(AI_ADDRCONFIG), which Slurm uses, finds no IPv4 address when 127.0.0.1 is the
  # only one: a second loopback address makes the private network usable
  ip link set lo up && ip addr add 127.0.0.2/8 dev lo || { cluster_log "cannot set up the loopback"; return 1; }
  hostname n1
  { echo "127.0.0.1 localhost"; for k in $(seq 1 "$nodes"); do echo "127.0.0.1 n$k"; done; } > "$d/etc/hosts"
  mount --bind "$d/etc/hosts" /etc/hosts

  # munge: a fresh key; one munged per host (here: per node namespace, plus this one for slurmctld
  # and the clients), each on the socket $d/local/munge.socket of its namespace, as on a real cluster
  chmod 700 "$d/munge"
  head -c 1024 /dev/urandom > "$d/munge/munge.key"
  chmod 400 "$d/munge/munge.key"
  mkdir -p "$d/local"
  cluster_munged outer || return 1

  export SLURM_CONF=$d/etc/slurm.conf
  {
    echo "ClusterName=tempertest"
    echo "SlurmctldHost=n1(127.0.0.1)"
    echo "SlurmctldPort=6817"
    echo "SlurmdPort=6818"
    echo "AuthType=auth/munge"
    # cred_expire is also how long a requeued job waits before it may start again (120 s by default)
    echo "AuthInfo=socket=$d/local/munge.socket,cred_expire=10"
    echo "CredType=cred/munge"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "StateSaveLocation=$d/state"
    echo "SlurmdSpoolDir=$d/local/spool"
    echo "SlurmctldPidFile=$d/slurmctld.pid"
    echo "SlurmdPidFile=$d/slurmd.%n.pid"
    echo "SlurmctldLogFile=$d/log/slurmctld.log"
    echo "SlurmdLogFile=$d/log/slurmd.%n.log"
    echo "SlurmctldDebug=info"
    echo "SlurmdDebug=info"
    echo "PlugStackConfig=$d/etc/plugstack.conf"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "SlurmdParameters=config_overrides"
    echo "SchedulerType=sched/builtin"
    echo "MpiDefault=none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "SwitchType=switch/none"
    echo "MailProg=/bin/true"
    echo "JobRequeue=1"
    echo "ReturnToService=2"
    echo "KillWait=30"
    echo "MinJobAge=3600"
    echo "MessageTimeout=60"
    echo "SlurmdTimeout=300"
    echo "SlurmctldTimeout=300"
    echo "BatchStartTimeout=120"
    echo "GresTypes=gpu"
    for k in $(seq 1 "$nodes"); do
      echo "NodeName=n$k NodeAddr=127.0.0.1 NodeHostname=n$k Port=$((6817 + k)) CPUs=$cpus RealMemory=4000 Gres=gpu:$gpus State=UNKNOWN"
    done
    echo "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
  } > "$SLURM_CONF"
  # a gpu gres needs device files (Count alone registers 0): character devices stand in
  local devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
  [ "$gpus" -le ${#devs[@]} ] || { cluster_log "at most ${#devs[@]} gpus per node"; return 1; }
  echo "Name=gpu File=$(IFS=,; echo "${devs[*]:0:$gpus}")" > "$d/etc/gres.conf"
  echo "optional /usr/lib/x86_64-linux-gnu/slurm-wlm/spank_pbs.so" > "$d/etc/plugstack.conf"

  # PMIx's client directories, like the spool, are per node: $d/local is node nK's $d/nodes/nK
  echo "PMIxCliTmpDirBase=$d/local/tmp" > "$d/etc/mpi.conf"

  slurmctld -D -i -f "$SLURM_CONF" > "$d/log/slurmctld.out" 2>&1 &
  for k in $(seq 1 "$nodes"); do
    mkdir -p "$d/nodes/n$k/spool" "$d/nodes/n$k/tmp"
    unshare --mount --uts bash -c "source '${BASH_SOURCE[0]}' && hostname n$k && mount --bind '$d/nodes/n$k' '$d/local' &&
                                   cluster_munged n$k && exec slurmd -D -f '$SLURM_CONF'" > "$d/log/slurmd.n$k.out" 2>&1 &
  done
  if ! cluster_wait 120 cluster_all_idle "$nodes"; then
    cluster_log "the nodes did not come up within 120 s"; sinfo -N -l 2>&1; cluster_dump_logs; return 1
  fi
  cluster_log "$nodes node(s) idle: $(sinfo -h -N -o '%N %T %c' | tr '\n' ' ')"
}

cluster_munged() {   # cluster_munged NAME: a munged on $SLURM_TEST_DIR/local/munge.socket
  local d=$SLURM_TEST_DIR
  munged --force --key-file="$d/munge/munge.key" --socket="$d/local/munge.socket" --num-threads=4 \
         --pid-file="$d/local/munged.pid" --log-file="$d/log/munged.$1.log" --seed-file="$d/local/munged.seed" \
    || { cluster_log "munged ($1) did not start"; return 1; }
}

cluster_all_idle() {
  [ "$(sinfo -h -N -o '%T' 2>/dev/null | grep -c '^idle')" -eq "$1" ]
}

cluster_dump_logs() {
  local f
  for f in "$SLURM_TEST_DIR"/log/*; do
    echo "---- tail of $f"; tail -n 30 "$f"
  done
}

cluster_stop() {
  [ -n "${SLURM_CONF:-}" ] || return 0
  scontrol shutdown >/dev/null 2>&1 || true
  cluster_wait 30 sh -c '! scontrol ping >/dev/null 2>&1' || true
  # the nodes' munged end with the namespaces; this one now
  [ -s "$SLURM_TEST_DIR/local/munged.pid" ] && kill "$(cat "$SLURM_TEST_DIR/local/munged.pid")" 2>/dev/null
  return 0
}
