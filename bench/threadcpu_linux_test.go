//go:build linux

package bench

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time (user and system) of the calling thread
// (CLOCK_THREAD_CPUTIME_ID): around work run on a goroutine locked to its
// thread (runtime.LockOSThread), the CPU that work cost on that thread,
// whatever other processes of a shared machine do meanwhile.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
