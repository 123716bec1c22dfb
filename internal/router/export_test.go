package router

import "context"

// MaintainLeasesForTest runs one lease cycle synchronously.
func MaintainLeasesForTest(ctx context.Context, e *Engine) error { return MaintainLeases(ctx, e) }

// EncodeContent is encodeContent, for its test.
var EncodeContent = encodeContent

// EncodeContentJSON is encodeContent by encoding/json, for its test.
var EncodeContentJSON = encodeContentJSON

// GroupStatsForTest returns how many shared Accept transactions ran, and
// how many calls ran alone after their group failed.
func GroupStatsForTest(s *Service) (shared, alone int64) {
	return s.groups.shared.Load(), s.groups.alone.Load()
}

// QueuedForTest is how many Accept calls of a tenant wait for a group.
func QueuedForTest(s *Service, tenantID string) int {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	if q := s.groups.m[tenantID]; q != nil {
		return len(q.waiting)
	}
	return 0
}

// DecodeContent is decodeContent, for its test.
var DecodeContent = decodeContent
