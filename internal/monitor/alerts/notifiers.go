package alerts

import (
	"context"
	"fmt"
	"strings"

	"github.com/relais-dev/relais/internal/monitor/notify"
)

// OperatorNotifier sends every alert event to the operator's addresses
// and webhook (monitor.notify_emails, monitor.webhook_url). Unset parts
// are skipped.
type OperatorNotifier struct {
	Email      *notify.Email
	To         []string
	Webhook    *notify.Webhook
	WebhookURL string
}

// Notify implements Notifier.
func (n *OperatorNotifier) Notify(ctx context.Context, ev Event) (string, error) {
	var done []string
	var errs []string
	a := ev.Alert
	if n.Email.Configured() && len(n.To) > 0 {
		scope := "platform"
		if a.TenantID != "" {
			scope = "tenant " + a.TenantID
		}
		subject := fmt.Sprintf("[relais %s] %s: %s", strings.ToUpper(ev.Kind), a.Rule, a.Summary)
		body := fmt.Sprintf("Alert %s is %s.\n\nRule:     %s\nScope:    %s\nSeverity: %s\nKey:      %s\nFired:    %s\n\n%s\n\nDetails: %s\n",
			a.ID, ev.Kind, a.Rule, scope, a.Severity, a.Key, a.FiredAt.Format("2006-01-02 15:04:05Z07:00"), a.Summary, string(a.Details))
		if err := n.Email.Send(ctx, n.To, subject, body); err != nil {
			errs = append(errs, err.Error())
		} else {
			done = append(done, fmt.Sprintf("email:%d", len(n.To)))
		}
	}
	if n.Webhook.Configured() && n.WebhookURL != "" {
		if err := n.Webhook.Post(ctx, n.WebhookURL, a.ID+"/"+ev.Kind, ev); err != nil {
			errs = append(errs, err.Error())
		} else {
			done = append(done, "webhook:ok")
		}
	}
	if len(errs) > 0 {
		return strings.Join(done, " "), fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return strings.Join(done, " "), nil
}
