package web

// uiRoutes are the server-rendered browser pages.
func (s *Server) uiRoutes() []Route { return nil }
