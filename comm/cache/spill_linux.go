package cache

import (
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// openDirectFile opens path with flag (to write, create) and O_DIRECT. A
// file system that refuses O_DIRECT (EINVAL) gets errNoDirect, and no
// file is left behind (Linux may create the file before it checks the
// flag).
func openDirectFile(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_DIRECT, 0o600)
	if errors.Is(err, syscall.EINVAL) {
		os.Remove(path)
		return nil, errNoDirect
	}
	return f, err
}

// writeAll writes bufs to f in order with writev(2), so that an O_DIRECT
// header block and the data go to the device as one request rather than
// two synchronous ones.
func writeAll(f *os.File, bufs [][]byte) error {
	iov := make([]syscall.Iovec, 0, len(bufs))
	for _, b := range bufs {
		if len(b) > 0 {
			v := syscall.Iovec{Base: unsafe.SliceData(b)}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		werr = writev(fd, iov)
		return true // a regular file is never waited for
	})
	runtime.KeepAlive(bufs)
	if err != nil {
		return err
	}
	return werr
}

// writev writes all of iov to fd, retrying after short writes.
func writev(fd uintptr, iov []syscall.Iovec) error {
	for len(iov) > 0 {
		n, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		for n > 0 { // drop what was written
			if l := uintptr(iov[0].Len); n < l {
				iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
				iov[0].SetLen(int(l - n))
				break
			}
			n -= uintptr(iov[0].Len)
			iov = iov[1:]
		}
	}
	return nil
}
