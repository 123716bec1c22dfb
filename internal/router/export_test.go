package router

import "context"

// MaintainLeasesForTest runs one lease cycle synchronously.
func MaintainLeasesForTest(ctx context.Context, e *Engine) error { return MaintainLeases(ctx, e) }

// EncodeContent is encodeContent, for its test.
var EncodeContent = encodeContent
