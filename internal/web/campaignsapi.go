package web

// campaignRoutes are the templates and campaigns endpoints.
func (s *Server) campaignRoutes() []Route { return nil }
