package sched

// Event is an input to [Job.Step].
type Event interface{ isEvent() }

// Start tells the job that the initial membership has been fed in as NodeUp
// events, so placement may begin and an impossible request can be judged.
type Start struct{}

// NodeUp reports a node that joined or whose resources changed. A report
// with a lower Seq than the one held is used only for its liveness.
type NodeUp struct{ Node Node }

// NodeDown reports a node that left or was declared dead. Ranks offered to
// or running on it are lost.
type NodeDown struct{ Name string }

// Accepted reports that Node accepted and started the given incarnation of
// Rank. Report, when its Name is set, is the node's resource state right
// after the reservation.
type Accepted struct {
	Rank, Incarnation int
	Node              string
	Report            Node
}

// Declined reports that Node declined an offer. Permanent means it never
// could take such a rank. Report is as for Accepted.
type Declined struct {
	Rank, Incarnation int
	Node              string
	Reason            string
	Permanent         bool
	Report            Node
}

// ExitKind says how a rank ended, which decides whether it is restarted.
type ExitKind int

const (
	// ExitStatus: the program exited by itself with Status (final).
	ExitStatus ExitKind = iota
	// ExitLimit: the node stopped it for exceeding its time or memory limit (final).
	ExitLimit
	// ExitSignaled: it died of a signal the job did not send (restartable).
	ExitSignaled
	// ExitLost: its node or the connection to it was lost (restartable).
	ExitLost
	// ExitStopped: it ended after the job stopped it (final, not a failure).
	ExitStopped
)

// Exited reports the end of an incarnation of Rank (started or not).
// Status is its exit status (128+signal when killed by a signal).
type Exited struct {
	Rank, Incarnation int
	Kind              ExitKind
	Status            int
	Reason            string
	Report            Node
}

// Interrupt asks the job to stop: Signal is forwarded to every rank and no
// new rank starts. Force (a second Ctrl-C) kills them.
type Interrupt struct {
	Signal int
	Force  bool
}

func (Start) isEvent()     {}
func (NodeUp) isEvent()    {}
func (NodeDown) isEvent()  {}
func (Accepted) isEvent()  {}
func (Declined) isEvent()  {}
func (Exited) isEvent()    {}
func (Interrupt) isEvent() {}

// Action is an output of [Job.Ready], to be executed in order.
type Action interface{ isAction() }

// Offer asks the driver to offer this incarnation of Rank to Node and to
// report the answer as Accepted, Declined or Exited.
type Offer struct {
	Rank, Incarnation int
	Node              string
}

// Restart says Rank will run again as Incarnation, and why.
type Restart struct {
	Rank, Incarnation int
	Reason            string
}

// Stop asks the driver to send Signal to the listed ranks (offered or
// running); an offered rank's offer is withdrawn. Signal 9 kills.
type Stop struct {
	Ranks  []int
	Signal int
	Reason string
}

// Fail says the job cannot complete; Reason is for the user. The job still
// emits Done once its ranks have ended.
type Fail struct{ Reason string }

// Done is the job's last action: its exit status and, for a failed job, why.
type Done struct {
	Status int
	Reason string
}

// Progress summarises the ranks whenever the counts change. Waiting says
// what pending ranks wait for ("a node with 1 free slot and 512 MiB").
type Progress struct {
	Size, Running, Pending, Offered, Finished int
	Waiting                                   string
}

func (Offer) isAction()    {}
func (Restart) isAction()  {}
func (Stop) isAction()     {}
func (Fail) isAction()     {}
func (Done) isAction()     {}
func (Progress) isAction() {}
