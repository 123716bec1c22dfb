package templates

// Vars is the merge data of one message in typed form; Map turns it into
// the map Render takes.
type Vars struct {
	Contact    ContactFields
	Attributes map[string]any
	// Data is the transactional data (data.*); ignored by templates that
	// are not transactional.
	Data  map[string]any
	Links Links
}

// ContactFields are the contact fields a template may use (decrypted by
// the caller).
type ContactFields struct {
	Email     string
	Phone     string
	FirstName string
	LastName  string
	Locale    string
	TimeZone  string
}

// Links are the per-message links a template may use.
type Links struct {
	Unsubscribe string
	Preferences string
}

// Map returns the merge data as Render takes it.
func (v Vars) Map() map[string]any {
	m := map[string]any{
		"contact": map[string]any{
			"email": v.Contact.Email, "phone": v.Contact.Phone, "first_name": v.Contact.FirstName,
			"last_name": v.Contact.LastName, "locale": v.Contact.Locale, "timezone": v.Contact.TimeZone,
		},
		"links": map[string]any{"unsubscribe": v.Links.Unsubscribe, "preferences": v.Links.Preferences},
	}
	if v.Attributes != nil {
		m["attributes"] = v.Attributes
	}
	if v.Data != nil {
		m["data"] = v.Data
	}
	return m
}
