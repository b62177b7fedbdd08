// Package sched holds pispace's placement decisions as pure code: which nodes
// could take a rank (the locator's answer), whether a servent should accept an
// offer, which node is a job's rendezvous, and the job state machine that turns
// membership and servent replies into offers, restarts and a final status.
//
// Nothing here does I/O, reads the clock or starts goroutines. The launcher
// feeds a [Job] events ([NodeUp], [NodeDown], [Accepted], [Declined],
// [Exited], [Interrupt], ...) with [Job.Step] and executes the actions it gets
// back from [Job.Ready] ([Offer], [Restart], [Stop], [Fail], [Done],
// [Progress]), in order. A Job is not safe for concurrent use: one goroutine
// (the launcher's driver) owns it.
//
// Scheduling is co-allocation free: a rank starts as soon as some node accepts
// it, a rank that finds no room is pending rather than an error, and pending
// ranks are offered to nodes the moment resources appear (a node joins, a rank
// ends). The job fails at once only when no live node could ever take a rank
// (it asks for more memory or time than any node allows), and then the reason
// of every node is listed.
//
// Exit status rule: a job's status is 0 when every rank exited 0; otherwise it
// is the status of the lowest-numbered rank that failed on its own (a rank
// stopped by the job because another rank failed, or because of Ctrl-C, does
// not count). A rank killed by signal S has status 128+S. A job that fails for
// a reason no rank status describes (no node can run a rank, a lost rank with
// no restarts left) has status [StatusFailed]; an interrupted job whose ranks
// all ended quietly has status 128+signal.
//
// Restart rule: a rank is restarted, with the next incarnation number, when
// its node is lost (declared dead, or its connection breaks) or when it dies of
// a signal the job did not send, up to JobConfig.MaxRestarts times. A rank that
// exits with a status, or is stopped for exceeding its time or memory limit,
// is not restarted: the status is the program's answer, and re-running a
// deterministic failure would only spend the budget.
package sched
