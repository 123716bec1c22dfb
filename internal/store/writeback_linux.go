package store

import (
	"os"

	"golang.org/x/sys/unix"
)

const writebackSupported = true

// startWriteOut starts the write-out of f's dirty pages that are not
// being written already, without waiting for it.
func startWriteOut(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		werr = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE) // #nosec G115 -- a file descriptor fits an int
	}); err != nil {
		return err
	}
	return werr
}
