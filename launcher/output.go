package launcher

import (
	"fmt"
	"io"
	"sync"

	"github.com/pispace/pispace/sched"
)

// output writes rank lines with a rank prefix, pirun's own messages and the
// progress line. Safe for concurrent use.
type output struct {
	mu       sync.Mutex
	stdout   io.Writer
	stderr   io.Writer
	terminal bool
	progress string // shown on the terminal's last line
	lastLine string // last plain progress line printed
}

// line writes one line of a rank's stream with its rank prefix.
func (o *output) line(rank int, stderr bool, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clear()
	w := o.stdout
	if stderr {
		w = o.stderr
	}
	nl := ""
	if len(b) == 0 || b[len(b)-1] != '\n' {
		nl = "\n"
	}
	fmt.Fprintf(w, "[%d] %s%s", rank, b, nl)
	o.redraw()
}

// say writes one of pirun's own messages to stderr.
func (o *output) say(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clear()
	fmt.Fprintf(o.stderr, "pirun: "+format+"\n", args...)
	o.redraw()
}

// show updates the progress: a rewritten line on a terminal, otherwise a
// plain line whenever ranks are waiting and once when none are any more.
func (o *output) show(p sched.Progress) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := p.String()
	if o.terminal {
		o.progress = s
		o.redraw()
		return
	}
	if (p.Pending > 0 || o.lastLine != "") && s != o.lastLine {
		fmt.Fprintf(o.stderr, "pirun: %s\n", s)
		o.lastLine = s
		if p.Pending == 0 {
			o.lastLine = ""
		}
	}
}

// done removes the progress line for good.
func (o *output) done() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clear()
	o.progress = ""
}

func (o *output) clear() {
	if o.terminal && o.progress != "" {
		fmt.Fprint(o.stderr, "\r\033[K")
	}
}

func (o *output) redraw() {
	if o.terminal && o.progress != "" {
		fmt.Fprintf(o.stderr, "\rpirun: %s\033[K", o.progress)
	}
}
