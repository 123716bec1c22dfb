package web

// adminRoutes are the tenant administration endpoints (users, roles,
// groups, API clients, access review).
func (s *Server) adminRoutes() []Route { return nil }
