package launcher

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// groupRSS returns the resident memory, in bytes, of every process in the
// process group pgid (the fallback memory watch when cgroup v2 is absent).
func groupRSS(pgid int) int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pid == pgid || processGroup(pid) == pgid {
			total += vmField(pid, "VmRSS:")
		}
	}
	return total
}

// processGroup returns the process group of pid from /proc/<pid>/stat, or -1.
func processGroup(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// the command name may hold spaces and parentheses: fields follow the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return -1
	}
	g, err := strconv.Atoi(f[2])
	if err != nil {
		return -1
	}
	return g
}

// vmField reads a kB field (VmRSS:, VmHWM:) from /proc/<pid>/status, in bytes.
func vmField(pid int, field string) int64 {
	return procKB(fmt.Sprintf("/proc/%d/status", pid), field)
}

// procKB reads a "field: N kB" line (/proc/meminfo, /proc/<pid>/status) of
// the file at path, in bytes, or 0.
func procKB(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// cgroup is a cgroup v2 leaf for one rank with memory.max set. A nil
// *cgroup (cgroup v2 unavailable, or not delegated to us) is valid and
// inactive: the caller then watches the process group instead.
type cgroup struct {
	dir string
	fd  int
}

// cgroupRoot and selfCgroup are variables so tests can point them at a
// fake hierarchy.
var (
	cgroupRoot = "/sys/fs/cgroup"
	selfCgroup = "/proc/self/cgroup"
)

// newCgroup creates a leaf under this process's own cgroup, or returns nil.
func newCgroup(label string, limit int64) *cgroup {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
		return nil
	}
	self, err := os.ReadFile(selfCgroup)
	if err != nil {
		return nil
	}
	rel, ok := strings.CutPrefix(strings.TrimSpace(string(self)), "0::")
	if !ok {
		return nil
	}
	parent := filepath.Join(cgroupRoot, rel)
	ctl, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	if err != nil || !strings.Contains(string(ctl), "memory") {
		return nil
	}
	dir := filepath.Join(parent, "pirun-"+label)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil
	}
	if os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0) != nil {
		os.Remove(dir)
		return nil
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		os.Remove(dir)
		return nil
	}
	return &cgroup{dir: dir, fd: fd}
}

func (c *cgroup) active() bool { return c != nil }

// apply makes the child start inside the cgroup (clone3 CLONE_INTO_CGROUP).
func (c *cgroup) apply(a *syscall.SysProcAttr) {
	if c == nil {
		return
	}
	a.UseCgroupFD, a.CgroupFD = true, c.fd
}

func (c *cgroup) peak() int64 {
	if c == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "memory.peak"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (c *cgroup) oomKilled() bool {
	if c == nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "memory.events"))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "oom_kill "); ok && strings.TrimSpace(rest) != "0" {
			return true
		}
	}
	return false
}

func (c *cgroup) remove() {
	if c == nil {
		return
	}
	syscall.Close(c.fd)
	os.Remove(c.dir)
}
