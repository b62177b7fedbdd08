package lookup_test

import (
	"fmt"

	"github.com/pispace/pispace/comm/lookup"
)

// A driver steps events, executes Ready's actions and advances. Here a
// reader attaches before the writer creates the channel, and is woken as
// the writer's data becomes durable in the cache.
func Example() {
	s := lookup.NewSpace("job/42", lookup.Config{Lease: 60})
	execute := func() {
		for _, a := range s.Ready() {
			switch a := a.(type) {
			case lookup.ReplyCreate:
				fmt.Printf("session %d: created #%d\n", a.Session, a.Info.ID)
			case lookup.ReplyAttach:
				fmt.Printf("session %d: attached #%d (%s)\n", a.Session, a.Info.ID, a.Info.State)
			case lookup.Wake:
				fmt.Printf("session %d: wake at %d sealed=%t\n", a.Session, a.Length, a.Sealed)
			case lookup.ReplyClose:
				fmt.Printf("session %d: closed at %d\n", a.Session, a.Info.Length)
			case lookup.DeleteInstance:
				fmt.Printf("cache: drop #%d\n", a.Instance)
			case lookup.DeleteSpace:
				fmt.Println("space deleted")
			default:
				fmt.Printf("%#v\n", a)
			}
		}
		s.Advance()
	}
	const writer, reader = 1, 2
	for _, ev := range []lookup.Event{
		lookup.OpenSpace{Session: writer},
		lookup.OpenSpace{Session: reader},
		lookup.Attach{Req: 1, Session: reader, Name: "halo", Elem: lookup.ElemAny, Wait: true},
		lookup.Create{Req: 1, Session: writer, Name: "halo", Elem: 10, WriterKey: "rank0"},
		lookup.ReaderWait{Req: 2, Session: reader, Instance: 1, Offset: 0},
		lookup.Appended{Instance: 1, Length: 64},
		lookup.Close{Req: 2, Session: writer, Instance: 1, Length: 64},
		lookup.ReadDone{Session: reader, Instance: 1},
		lookup.CloseSpace{Session: writer},
		lookup.CloseSpace{Session: reader},
	} {
		if err := s.Step(ev); err != nil {
			fmt.Println("rejected:", err)
		}
		execute()
	}
	// Output:
	// session 1: created #1
	// session 2: attached #1 (ReadWrite)
	// session 2: wake at 64 sealed=false
	// session 1: closed at 64
	// cache: drop #1
	// space deleted
}
