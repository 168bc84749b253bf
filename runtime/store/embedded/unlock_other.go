//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package embedded

import "os"

// unlock is best effort elsewhere: the file is closed, and the lock goes
// when the process exits.
func unlock(*os.File) {}
