// Package rt is the rank runtime of pispace: an MPI-like API (ranks,
// typed point-to-point messages, collectives, sub-communicators,
// checkpoints) over the persistent π-channels of a job's space.
//
// # World, ranks and incarnations
//
// A rank program calls [Init], which reads what pirun put in the
// environment (PIRUN_RANK, PIRUN_SIZE, PIRUN_INCARNATION, PIRUN_MIN,
// PIRUN_MAX_RESTARTS, PIRUN_COMM, PIRUN_SPACE, PIRUN_JOB) and returns the world [Comm]. Run
// without pirun it is a world of size 1 on an in-process space. [New]
// builds a world over any [Space] (tests use package rttest, which runs N
// ranks as goroutines). Ranks need not run at the same time: a message
// waits in the space until its receiver reads it, however late that
// receiver starts. [Comm.WaitForMin] waits for PIRUN_MIN ranks to have
// started, for programs that want it. Incarnation counts restarts of the
// rank after faults. Close the world when done: [Comm.Close] seals and makes
// durable everything the rank wrote.
//
// # Point-to-point
//
// [Send] and [Recv] move slices of fixed-size numbers ([Elem]); [SendBytes]
// and [RecvBytes] move raw bytes. Because Go methods cannot have type
// parameters they are package functions: rt.Send(ctx, c, dst, tag, buf).
// Tags are >= 0; a receive may name [AnySource] and [AnyTag].
//
//   - Ordering: messages from one rank to another with one tag are received
//     in the order they were sent. Across tags or sources there is no order.
//   - Ownership: Send returns once the message is in the receiver's channel;
//     buf may be reused at once. It never waits for the receiver. Recv
//     writes into the caller's buffer; a message longer than it fails with
//     ErrTruncated (and is consumed).
//   - Types: the element type travels in every frame and is checked by the
//     receiver: a float64 message received as int32 fails with ErrType.
//   - [Isend] completes before it returns (sends never block); [Irecv] posts
//     a receive whose buffer belongs to the runtime until [Request.Wait],
//     [Request.Test] or [WaitAll] reports it complete. Posted receives are
//     matched in posting order.
//
// Unexpected messages (arrived before a matching receive) are queued per
// communicator, up to Config.MaxUnexpectedBytes per source; beyond that the
// runtime stops reading that source's channel (the data stays in the space)
// until a receive needs it, so memory stays bounded without deadlock. Idle
// sources are read ahead only up to the first message over 256 KiB, which
// waits in the space for its receive to read it straight into its buffer.
//
// # Collectives
//
// [Comm.Barrier], [Bcast], [Reduce], [Allreduce], [Scan], [Gather],
// [Gatherv], [Scatter], [Scatterv], [Allgather] and [Alltoall] must be
// called by every rank of the communicator, in the same order, one at a
// time per communicator. Calling different collectives at the same point
// fails with ErrMismatch, and disagreeing buffer lengths with ErrCount.
// Reductions take an [Op] ([Sum], [Prod], [Min], [Max] or [NewOp]) and
// combine in rank order, x0 op x1 op ... op x(n-1), so associative but
// non-commutative operators are correct; the grouping depends only on n,
// the length and Config, so results are deterministic and Allreduce gives
// bit-identical results on every rank. Algorithms switch at documented
// Config thresholds:
//
//	Barrier    dissemination, ceil(log2 n) rounds
//	Bcast      binomial tree; >= BcastLargeBytes (256 KiB) and n >= 3:
//	           scatter + ring allgather
//	Reduce     binomial tree to rank 0 (then to root); >= ReduceLargeBytes
//	           (64 KiB) with a splittable op: recursive-halving
//	           reduce-scatter + direct gather
//	Allreduce  recursive doubling; >= ReduceLargeBytes with a splittable
//	           op: Rabenseifner (recursive halving + recursive doubling);
//	           non-power-of-two n folds adjacent pairs first
//	Scan       recursive doubling (Hillis-Steele)
//	Gather,    binomial trees; per-rank block >= GatherLargeBytes (32 KiB):
//	Scatter    direct to/from root; Gatherv/Scatterv always direct
//	Allgather  Bruck; block >= GatherLargeBytes: ring
//	Alltoall   every rank writes its n-1 blocks, then reads n-1
//
// # Sub-communicators and named channels
//
// [Comm.Split] creates communicators over subsets of ranks with all the
// same operations. [Comm.Create] and [Comm.Attach] open channels of the
// job's space under names the program chooses (not starting with "_rt/").
//
// # Checkpoint and restart
//
// [Comm.Checkpoint] stores the caller's state together with the runtime's
// position on every communicator (bytes and sequence numbers sent to and
// consumed from each peer). A restarted rank (Incarnation() > 0) calls
// [Comm.Restore] at start-up: it gets the latest state back, and its
// channels continue from the recorded positions. Messages it sends again
// while replaying are dropped by the space (their bytes already exist), and
// messages peers sent it since the checkpoint are still in its channels, so
// every message is delivered exactly once. This assumes the program is
// deterministic between checkpoints.
//
// The space keeps a job's messages so that a restarted rank can replay
// them, but no longer than a restart can need them: a checkpoint lets the
// space discard what the rank read between its first checkpoint and the
// one before its latest, and the saved state of all but the latest two
// checkpoints, and a job that allows no restarts (pirun
// --max-restarts 0, [Config.TrimConsumed]) discards each message once
// consumed. A program that checkpoints now and then therefore runs in
// bounded space.
//
// # Errors
//
// Errors are sentinels (ErrRank, ErrType, ...) wrapped, usually, in a
// [*RankError] naming the peer and the operation; match them with
// errors.Is and errors.As. Every blocking call takes a context and returns
// its error when it ends; misuse returns an error rather than hanging.
//
// # Concurrency
//
// A Comm may be used from several goroutines for point-to-point calls.
// Collectives, Split, Checkpoint and Restore must not run concurrently with
// other operations on the same communicator. Locks, when nested, are taken
// in the order world.ckptMu, world.mu, then a communicator's splitMu, a
// peer's outChan.mu, inbox.mu; Comm.closeMu is taken before any of them.
// No lock is held while waiting for a reader.
package rt
