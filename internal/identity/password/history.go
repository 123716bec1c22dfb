package password

import (
	"errors"
	"fmt"
)

// MaxHistory is the largest number of previous hashes [Reused] accepts in
// one call. Each one costs a full derivation, so the bound keeps a password
// change from taking seconds; AUTH-10's default history is 5.
const MaxHistory = 24

// Reused reports whether pw matches one of previous, the encoded hashes of
// the user's last passwords (the caller passes the N most recent, N from the
// policy in force, at most [MaxHistory]).
//
// A match is (true, nil), even if other entries are malformed. With no match,
// malformed entries are reported in the error (each wrapping
// [ErrMalformed]), so that the caller can tell "not reused" from "could not
// check every entry".
func Reused(pw string, previous []string) (bool, error) {
	if len(previous) > MaxHistory {
		return false, fmt.Errorf("password: reused: %d previous hashes, at most %d", len(previous), MaxHistory)
	}
	if len(pw) > MaxPasswordBytes {
		return false, fmt.Errorf("password: reused: %w (at most %d bytes)", ErrTooLong, MaxPasswordBytes)
	}
	var errs []error
	for i, encoded := range previous {
		ok, err := verify(pw, encoded)
		if err != nil {
			errs = append(errs, fmt.Errorf("previous hash %d: %w", i, err))
			continue
		}
		if ok {
			return true, nil
		}
	}
	if len(errs) > 0 {
		return false, fmt.Errorf("password: reused: %w", errors.Join(errs...))
	}
	return false, nil
}
