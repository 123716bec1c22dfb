//go:build !linux

package store

import (
	"errors"
	"os"
)

const writebackSupported = false

func startWriteOut(*os.File) error { return errors.New("store: no write-out hint on this platform") }
