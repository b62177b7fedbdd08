#!/usr/bin/env bash
# netns.sh PIRUN HELLO SLEEPER
#
# Runs pirun's multi-node scenarios with every node (and the initiator) in its
# own network namespace with its own address, joined by a bridge that lives in
# a private "hub" namespace (the host's network is not touched):
#   1. three nodes, a job of 6 ranks spreads 2 per node;
#   2. kill -9 of a node mid-run: its rank restarts elsewhere, the job completes;
#   3. a network cut (the node's link goes down, no process dies): the failure
#      detector declares the node dead and its rank restarts elsewhere.
# Needs root and `ip netns`; exits 77 (skip) when they are missing.
set -u
PIRUN=$1 HELLO=$2 SLEEPER=$3
if [ "$(id -u)" != 0 ] || ! ip netns list >/dev/null 2>&1; then
  echo "netns.sh: skipped: needs root and ip netns"; exit 77
fi
tag=pi$$
hub=$tag-hub
work=$(mktemp -d)
pids=()
fail() { echo "netns.sh: FAIL: $*"; exit 1; }
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ns in $(ip netns list | awk '{print $1}' | grep "^$tag-"); do ip netns del "$ns"; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$hub" 2>/dev/null || { echo "netns.sh: skipped: cannot create a network namespace (no CAP_SYS_ADMIN/NET_ADMIN?)"; exit 77; }
ip -n "$hub" link add br0 type bridge || { echo "netns.sh: skipped: no bridge support"; exit 77; }
ip -n "$hub" link set br0 up
ip -n "$hub" link set lo up

# mkns NAME IP: a namespace with one address on the hub's bridge.
mkns() {
  local ns=$tag-$1 ip=$2
  ip netns add "$ns"
  ip link add "$1-h" netns "$hub" type veth peer name eth0 netns "$ns"
  ip -n "$hub" link set "$1-h" master br0 up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}
mkns init 10.77.0.10
for i in 1 2 3 4; do mkns n$i 10.77.0.1$i; done

# startnode I: pirun node in namespace nI, 2 slots, joined to node 1.
startnode() {
  local i=$1 join=()
  [ "$i" != 1 ] && join=(--join 10.77.0.11:7946)
  ip netns exec "$tag-n$i" "$PIRUN" node --bind "10.77.0.1$i:7946" --profile tuned --slots 2 \
    --data "$work/data$i" "${join[@]}" >"$work/node$i.out" 2>"$work/node$i.err" &
  pids+=($!)
  nodepid[$i]=$!
  for _ in $(seq 100); do grep -q gossip "$work/node$i.out" && return 0; sleep 0.1; done
  cat "$work/node$i.err"; fail "node $i did not start"
}
declare -A nodepid
nodename() { awk '{print $3}' "$work/node$1.out" | tr -d :; }
for i in 1 2 3; do startnode "$i"; done
echo "netns.sh: 3 nodes up in their own namespaces (10.77.0.11-13)"

seeds=10.77.0.11:7946,10.77.0.12:7946,10.77.0.13:7946,10.77.0.14:7946
run() { ip netns exec "$tag-init" "$PIRUN" --join "$seeds" "$@"; }

# 1. spread
run -n 6 --report "$work/r1.json" "$HELLO" >"$work/job1.out" 2>"$work/job1.err" || { cat "$work/job1.err"; fail "job of 6 failed"; }
[ "$(grep -c 'hello from rank' "$work/job1.out")" = 6 ] || fail "job of 6 printed $(grep -c 'hello from rank' "$work/job1.out") lines"
for i in 1 2 3; do
  n=$(grep -c "\"node\": \"$(nodename $i)\"" "$work/r1.json")
  [ "$n" = 2 ] || fail "node $i ran $n ranks, want 2"
done
echo "netns.sh: scenario spread: ok (2 ranks on each of 3 nodes)"

# waitsleep FILE N: wait until N sleeper ranks report they sleep.
waitsleep() {
  for _ in $(seq 200); do [ "$(grep -c 'sleeping rank' "$1")" -ge "$2" ] && return 0; sleep 0.1; done
  cat "${1%.out}.err"; fail "ranks did not start: $(cat "$1")"
}
# victim FILE: the node index whose process is the parent of the first sleeping rank.
victim() {
  local rpid ppid
  rpid=$(grep -m1 -o 'pid [0-9]*' "$1" | awk '{print $2}')
  ppid=$(awk '{print $4}' "/proc/$rpid/stat")
  for i in "${!nodepid[@]}"; do [ "${nodepid[$i]}" = "$ppid" ] && echo "$i"; done
}

# 2. kill -9 a node mid-run
startnode 4
run -n 4 --max-restarts 2 -x SLEEPER_NOCHILD=1 -x SLEEPER_ONLY_INC0=1 --report "$work/r2.json" "$SLEEPER" 3s \
  >"$work/job2.out" 2>"$work/job2.err" &
job=$!; pids+=($job)
waitsleep "$work/job2.out" 4
v=$(victim "$work/job2.out"); [ -n "$v" ] || fail "no victim node found"
kill -9 "${nodepid[$v]}"
wait "$job" || { cat "$work/job2.err"; fail "job after kill -9 exited $?"; }
grep -q 'incarnation 1 done' "$work/job2.out" || fail "no rank restarted after kill -9: $(cat "$work/job2.err")"
echo "netns.sh: scenario kill -9 of node $v: ok (rank restarted elsewhere)"

# 3. network cut: the node's link goes down; only the failure detector can tell.
run -n 2 --max-restarts 2 -x SLEEPER_NOCHILD=1 -x SLEEPER_ONLY_INC0=1 --report "$work/r3.json" "$SLEEPER" 30s \
  >"$work/job3.out" 2>"$work/job3.err" &
job=$!; pids+=($job)
waitsleep "$work/job3.out" 2
v=$(victim "$work/job3.out"); [ -n "$v" ] || fail "no victim node found"
cut=$(date +%s%N)
ip -n "$tag-n$v" link set eth0 down
for _ in $(seq 300); do grep -q 'incarnation 1 done' "$work/job3.out" && break; sleep 0.05; done
grep -q 'incarnation 1 done' "$work/job3.out" || { cat "$work/job3.err"; fail "no restart after the network cut"; }
echo "netns.sh: scenario network cut of node $v: ok (restarted elsewhere $(( ($(date +%s%N) - cut) / 1000000 )) ms after the cut)"
kill "$job" 2>/dev/null
wait "$job" 2>/dev/null
echo "netns.sh: all scenarios passed"
