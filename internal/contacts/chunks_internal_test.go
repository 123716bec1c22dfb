package contacts

import (
	"errors"
	"testing"
)

// chunks covers every element once, in order, in parts of at most size
// rows whose sizes come from a small fixed set (so that the statements
// built per part have few texts), and stops at the first error.
func TestChunks(t *testing.T) {
	shapes := map[int]bool{}
	for n := 0; n <= 1200; n++ {
		xs := make([]int, n)
		for i := range xs {
			xs[i] = i
		}
		next := 0
		err := chunks(xs, 100, func(part []int) error {
			if len(part) == 0 || len(part) > 100 {
				t.Fatalf("n=%d: part of %d", n, len(part))
			}
			shapes[len(part)] = true
			for _, x := range part {
				if x != next {
					t.Fatalf("n=%d: got %d, want %d", n, x, next)
				}
				next++
			}
			return nil
		})
		if err != nil || next != n {
			t.Fatalf("n=%d: covered %d, %v", n, next, err)
		}
	}
	if len(shapes) > 8 { // 100, 64, 32, 16, 8, 4, 2, 1
		t.Fatalf("%d part sizes: %v", len(shapes), shapes)
	}
	stop := errors.New("stop")
	calls := 0
	if err := chunks(make([]int, 350), 100, func([]int) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("error: %v after %d calls", err, calls)
	}
}
