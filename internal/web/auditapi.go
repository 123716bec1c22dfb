package web

// auditRoutes are the audit trail endpoints (export, verification).
func (s *Server) auditRoutes() []Route { return nil }
