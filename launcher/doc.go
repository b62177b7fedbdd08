// Package launcher is pirun: the node daemon (servent and locator), the
// initiator that runs a job, and the embedded cluster, all executing the
// decisions of package sched.
//
// # Parts
//
// A node ([StartNode], `pirun node`) joins the cluster through
// hashicorp/memberlist under a name unique per incarnation (node-<uuidv7>),
// and advertises in its metadata (at most 512 bytes) its slots, free slots,
// memory, free memory, longest time limit, labels, a resource version, and
// the ports of its servent and of its comm server (the π-channel lookup and
// cache services, package comm/server). Service hosts are the member's own
// gossip address, so the same metadata works on loopback, behind 0.0.0.0 and
// in network namespaces.
//
// Every member keeps its own membership view from memberlist's callbacks, so
// every member is a locator: [Locate] orders the nodes that could take a
// rank now, best fit first (sched.Candidates), and a servent answers the
// same query over its protocol.
//
// The [Servent] accepts or declines an offer (slots, memory, time limit,
// program hash) with sched.Admit and says why when it declines, marking
// reasons that can never change as permanent. Once it accepts it reserves
// the resources, fetches the program if its sha256 is not in the node's
// cache, starts the rank in its own process group with SIGKILL as its
// parent-death signal, streams its output line by line, enforces the time
// limit (SIGTERM, then SIGKILL after a grace period) and the memory limit
// (cgroup v2 memory.max where the node's cgroup delegates the memory
// controller; otherwise by sampling the resident memory of the rank's
// process group and killing it above the limit), and reports wall time, CPU
// time, peak memory and exit status. When the initiator's connection drops,
// the rank is killed: nothing outlives its job.
//
// The initiator ([Run], `pirun -n N prog`) joins the cluster as a client
// member (runs nothing), loads its view, and feeds a sched.Job: membership
// changes, servent answers and rank ends go in as events; offers, restarts,
// stops and progress come out as actions, which it executes. Each offer is
// one TCP connection to a servent that, once the rank starts, carries its
// output, its stdin (rank 0), forwarded signals and finally its result. The
// job's space server (PIRUN_COMM) is the comm address of the node chosen by
// rendezvous hashing of the job id over the nodes alive at job start.
//
// With no --join and no PIRUN_JOIN, [Run] starts an embedded cluster
// ([StartEmbedded]) on loopback: min(CPUs, 4) in-process nodes with the
// tuned profile, with slots enough together for the whole job at once and
// at least one per CPU (it oversubscribes on purpose, like mpirun
// --oversubscribe, since ranks that wait for each other must all run), and
// each an equal share of the machine's memory. It runs through the same nodes, servents and protocol as a real
// cluster.
//
// # Rules a user sees
//
//   - Exit status: 0 when every rank exited 0; otherwise the status of the
//     lowest-numbered rank that failed on its own (128+signal when killed by
//     a signal, 143 or 137 after a time limit, 137 after a memory limit).
//     Ranks stopped by pirun because another failed, or by Ctrl-C, do not
//     count. A job that cannot run (no node can take a rank, a rank lost
//     with no restarts left) exits 1; an interrupted job 130 (SIGINT) or
//     143 (SIGTERM); a bad command line 2.
//   - When a rank fails, the others are stopped (SIGTERM), as mpirun does.
//   - Restarts (--max-restarts, default 3): a rank is restarted with the
//     next PIRUN_INCARNATION when its node is lost (declared dead, or its
//     connection breaks) or it dies of a signal nobody on pirun's side sent.
//     A rank that exits with a status, or exceeds a limit, is not restarted.
//   - A rank that finds no room is pending, not an error; it starts as soon
//     as a node joins or a slot frees. pirun fails at once only when no live
//     node could ever take it, and then lists every node's reason.
//   - Ranks get the node's environment, the -x variables and PIRUN_JOB,
//     PIRUN_RANK, PIRUN_SIZE, PIRUN_INCARNATION, PIRUN_MIN,
//     PIRUN_MAX_RESTARTS (--max-restarts: 0 lets the rank runtime trim
//     what ranks consumed, see rt.Config.TrimConsumed), PIRUN_COMM and
//     PIRUN_SPACE; their working directory is pirun's when it exists on the
//     node, else the work directory under the node's data directory.
//   - The first SIGINT or SIGTERM is forwarded to every rank; a second one
//     kills them. Peak memory is sampled (1 ms after the start, then backing
//     off to 100 ms): a rank shorter than the first sample shows "-".
//
// # Servent protocol
//
// TCP, frames of a 4-byte big-endian length n (at most [MaxFrame]) followed
// by n bytes: a type byte and the payload. Type 'C' carries one JSON control
// message; 'B' a chunk of the program binary; 'O' and 'E' a line of the
// rank's stdout or stderr; 'I' stdin bytes and 'Z' the end of stdin. The
// servent speaks first with hello (protocol version, and a nonce when the
// cluster has a key); the client's first message carries the version and,
// with a key, HMAC-SHA256(key, nonce). Then: offer -> accept (need_binary)
// or decline (reason, permanent); binary chunks and binary-end when asked;
// started (pid); output frames; exit (result with metrics, the node's
// resources after release). The client may send signal at any time after
// started. locate and status are one-shot queries. Malformed input gets an
// error message naming the problem and the connection closes; the servent
// keeps serving everyone else.
//
// # Membership profiles
//
// [ProfileLAN] is memberlist's LAN configuration, for real networks.
// [ProfileTuned] (probe 200 ms, suspicion window 400 ms, gossip every 20 ms
// to 4 nodes, retransmit ×4) spreads joins in tens of milliseconds and
// declares a crashed or cut-off node dead in about a second; it is for
// loopback, tests and the embedded cluster, and suspects nodes falsely
// sooner on a saturated machine. [ProfileAuto] picks tuned for a loopback
// bind address and LAN otherwise. With a cluster key (--key-file or
// PIRUN_KEY, 16/24/32 bytes as hex or base64) gossip is AES-GCM encrypted
// and a member without the key cannot join ([ErrNoKey]).
//
// # Goroutines
//
// Every goroutine is owned and joined by its component's Close, except one:
// the pump that reads pirun's own stdin for rank 0 cannot be interrupted
// while a Read blocks (a terminal), so it is abandoned when the job ends.
package launcher
