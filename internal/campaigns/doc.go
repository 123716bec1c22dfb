// Package campaigns sends one template to an audience (issue 5, item 2):
// a campaign names a channel, a template (its version pinned when
// scheduled), an audience (lists and segments), a schedule, an optional
// throttle, and moves through the states
//
//	draft -> scheduled -> running -> done
//	            |   ^        |  ^
//	            v   |        v  |
//	            paused <-----+--+          (resume: back to scheduled or running)
//	draft, scheduled, running, paused -> cancelled   (final)
//
// It is a domain service: no HTTP, no CLI; internal/web calls it.
//
// # Which functions to use
//
//	svc := &campaigns.Service{DB: db, Contacts: cs, Templates: ts, Router: rs, PublicBaseURL: "https://relais.example"}
//	go svc.Run(ctx) // the expansion job, on every node
//
// [Service.Create] stores a draft; [Service.Schedule] checks it and schedules
// it; [Service.Pause], [Service.Resume] and [Service.Cancel] control it;
// [Service.Report] gives its exact counts, deliverability and transit
// times; [Service.SetSettings] sets the tenant's quiet hours. Wire
// [SuppressFunc] as the router engine's EngineOptions.Suppress.
//
// # Scheduling
//
// Schedule refuses, with a *[ValidationError] naming the field: a send time
// in the past (kind at), a local time already past in the campaign's time
// zone (kind local), a template that is archived, of another channel, that
// names a field the campaign cannot fill (data.*, or an attribute removed
// from the schema since the template was saved: templates are checked
// again against the current schema) or that does not render, and an
// audience in which nobody may receive the campaign.
//
// Kinds: now (due at the schedule call), at (due at SendAt) and local (due
// at LocalTime, a wall time, in each contact's time zone; contacts without
// a valid zone use the campaign's zone, else the tenant's). A local time
// already past in some zones when the campaign expands is due at once there.
//
// Quiet hours are per tenant ([Settings], e.g. 21:00-08:00), read in each
// contact's zone: a message due inside the window is due at its end (the
// next 08:00). The throttle (messages per second) spreads due times: a
// message takes the first second at or after its due time that has fewer
// than the rate, spaced 1/rate apart within it, and is moved out of quiet
// hours again if the spreading pushed it in. Due times are computed when
// the audience is expanded; the router sends each message when it is due.
//
// # Expansion
//
// The audience is a snapshot taken at expansion (contacts.AudiencePages):
// only eligible contacts (active, consent granted for the channel and
// purpose, no address on the blocklist) get a message; the others are
// counted by reason in the campaign's progress. Expansion starts
// ExpandLead (5 minutes) before the first message is due: at once for now,
// before SendAt for at, before LocalTime happens in the zone furthest ahead
// (UTC+14) for local.
//
// It runs on one node: [Service.Run] (on every node) claims a due campaign
// by taking the lease held in its row (lease_owner, lease_until), which
// each committed batch renews. Each page of the audience (1000 contacts)
// is rendered in parallel (templates.Render, with the contact's unsubscribe
// link https://<PublicBaseURL>/u/<token>, which also gives the
// List-Unsubscribe and List-Unsubscribe-Post: List-Unsubscribe=One-Click
// headers), sealed, and written with router.Service.EnqueueTx in one
// transaction together with the campaign's cursor (the last contact id),
// counts and lease renewal. That transaction first updates the campaign
// row on the condition that it is still running, still leased by this node
// and still at the cursor this node read: a paused or cancelled campaign,
// or a node that lost its lease, writes nothing. A node that dies leaves
// its lease to expire (LeaseTTL, 2 minutes); the next node continues after
// the last committed page. Messages carry the idempotency key
// "campaign:<campaign id>:<contact id>" and are inserted with ON CONFLICT
// DO NOTHING, so even an expansion run again from the start creates no
// second message for a contact.
//
// # Before hand-off
//
// Consent, unsubscribe and blocklist are checked again just before each
// message is handed to a connector: the router calls [Suppressor.Check]
// with the message's campaign, whose consent purpose (Input.Purpose,
// "marketing" by default, or any purpose the tenant collects consent for)
// is the one checked, and a contact who unsubscribed, withdrew that consent
// or was blocklisted since the expansion gets nothing: the message becomes
// suppressed with the reason.
//
// # Pause, resume, cancel
//
// The pre-hand-off hook knows the contact, not the message or its
// campaign, so pause and cancel act on the campaign's messages in the
// queue instead. Pause stops the expansion (its next batch finds the
// campaign paused and rolls back) and moves the campaign's queued messages
// to the router state held (router.StateHeld, which the engine never
// claims), an event 'held' each. Resume queues them again, each due time
// moved by the length of the pause (a throttled campaign keeps its
// spacing), then out of quiet hours and through the throttle again; the
// expansion continues from its cursor. Cancel moves queued and held
// messages to suppressed with the reason "campaign cancelled" (an event
// each) and is final. In both cases a message the engine has already
// claimed for hand-off (state sending: at most one claimed batch per node)
// still goes, and is counted as what it becomes.
//
// # Done
//
// A running campaign whose expansion is complete becomes done when none
// of its messages is queued, being handed off or held. [Service.Report]
// reads exact counts by state from the queue (router.Service.Counts by
// campaign), deliverability = delivered / handed off (sent + delivered +
// bounced) and the mean transit times accepted -> sent and accepted ->
// delivered.
package campaigns
