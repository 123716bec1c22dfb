package connectors

import "errors"

// ErrInDoubt marks a temporary error after which the remote end may
// nevertheless have accepted the message: the connection broke, or the
// context ended, after the whole message had been handed over but before
// the remote end answered.
//
// Connectors wrap it inside Temporary, so IsTemporary still reports true and
// errors.Is(err, ErrInDoubt) tells the two cases apart. For a connector whose
// Capabilities.Idempotent is false (plain SMTP), retrying an in-doubt
// hand-off can send the message twice: the router should mark such a
// message unknown for review instead of retrying it, exactly as after a
// crash. For an idempotent connector a retry with the same Ref is safe.
var ErrInDoubt = errors.New("hand-off in doubt: the remote end may have accepted the message")
