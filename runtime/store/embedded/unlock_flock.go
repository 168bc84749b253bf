//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package embedded

import (
	"os"
	"syscall"
)

// unlock drops bbolt's flock on a file that bolt.Open abandoned by
// panicking. Closing the file is not enough: bbolt has mapped it into
// memory, and the mapping keeps the locked open file alive.
func unlock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
