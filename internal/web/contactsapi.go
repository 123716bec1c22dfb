package web

// contactRoutes are the contacts, consent, lists, segments, import and
// export endpoints.
func (s *Server) contactRoutes() []Route { return nil }
