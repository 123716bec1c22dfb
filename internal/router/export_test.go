package router

import "context"

// MaintainLeasesForTest runs one lease cycle (heartbeat, renew, take,
// give back, recover) synchronously.
func MaintainLeasesForTest(ctx context.Context, e *Engine) error {
	if err := e.ensureShards(ctx); err != nil {
		return err
	}
	return e.maintainLeases(ctx)
}
