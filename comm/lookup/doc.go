// Package lookup is the π-Spaces lookup service's state machine, as pure
// code: no network, no clock, no goroutines and no randomness. A [Space]
// holds one π-Space's table from channel name to a FIFO queue of channel
// instances, drives each instance through the paper's states (Empty,
// Writing, Available, ReaderWaiting, ReadWrite, ReaderAhead, plus Deleted)
// and decides what to answer. A server owns the I/O and executes the
// decisions.
//
// The shape follows etcd-io/raft: events go in through [Space.Step], the
// resulting actions come out of [Space.Ready], and [Space.Advance] confirms
// that they were carried out. design.md in this directory has the state
// diagram and the full event-state table.
//
// # The driver's duties
//
// A Space is not safe for concurrent use. One driver goroutine owns it and
// loops:
//
//  1. Turn every input into an [Event] and call [Space.Step]: client
//     requests (Create, Attach, CancelAttach, ReaderWait, Close, ReadDone,
//     Detach, SetAttr, OpenSpace, CloseSpace), cache reports (Appended),
//     connection loss (SessionLost) and logical time (Tick). A non-nil
//     error means the event was rejected (it wraps [ErrIllegal]); if the
//     event was a request, its [ReplyError] is already queued, so the
//     driver need only log the error.
//  2. Call [Space.Ready] and execute its actions in order: send reply
//     actions and [Wake] to the connection of their Session (a session that
//     is gone may be skipped), and send [DeleteInstance] to the cache. After
//     [DeleteSpace] drop the space and its cache data.
//  3. Call [Space.Advance]. Actions queued by Steps after that Ready stay
//     queued for the next Ready.
//
// Steps 1 to 3 may batch several Steps before one Ready. The driver must
// also:
//
//   - number sessions from 1 ([NoSession] is rejected) and give each
//     outstanding request of a session its own [ReqID]; a request is
//     answered exactly once, except that the waiting requests of a session
//     are dropped unanswered by [SessionLost];
//   - send OpenSpace before a session's first request and CloseSpace when it
//     is done: only opens count as users, and a space never opened never
//     starts its lease;
//   - send Tick with a non-decreasing Now, in the unit of [Config.Lease];
//   - report [Appended] only for data the cache holds durably, and send
//     Close only once the cache holds Length bytes;
//   - send SessionLost for every connection that ends, after which the
//     session's data stays in the space and its writer can resume by
//     WriterKey;
//   - stop using a Space once [Space.Deleted] is true; a new OpenSpace of the
//     name needs a new Space.
//
// Query methods ([Space.Instance], [Space.Instances], [Space.NameState],
// [Space.Users], [Space.Deleted]) reflect every Step at once, whether or not
// its actions were executed.
package lookup
