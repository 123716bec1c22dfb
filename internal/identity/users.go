package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// User statuses.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// User is a tenant's user, decrypted.
type User struct {
	ID                 string     `json:"id"`
	TenantID           string     `json:"tenant_id"`
	Email              string     `json:"email"`
	Name               string     `json:"name"`
	Status             string     `json:"status"`
	Source             string     `json:"source"`
	Locked             bool       `json:"locked"`
	LockedUntil        *time.Time `json:"locked_until,omitempty"`
	TOTPEnabled        bool       `json:"totp_enabled"`
	MustChangePassword bool       `json:"must_change_password"`
	HasPassword        bool       `json:"has_password"`
	PasswordChangedAt  *time.Time `json:"password_changed_at,omitempty"`
	LastLoginAt        *time.Time `json:"last_login_at,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
}

// NewUser is the input of CreateUser.
type NewUser struct {
	Email string
	Name  string
	// Password, when set, is the initial password; it must meet the
	// policy, and the user must change it at first login. Empty: the user
	// gets a one-time enrolment link instead.
	Password string
	// Privileged: the user will hold an administrative permission, so the
	// privileged minimum length applies.
	Privileged bool
	// Source is "local" (default), "oidc", "saml" or "scim".
	Source string
}

// EnrolmentTTL is how long an enrolment link stays valid.
const EnrolmentTTL = 72 * time.Hour

func validateName(name string) (string, error) {
	n := strings.TrimSpace(name)
	if len([]rune(n)) > 200 {
		return "", &ValidationError{Field: "name", Message: "must be at most 200 characters"}
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return "", &ValidationError{Field: "name", Message: "must not contain control characters"}
		}
	}
	return n, nil
}

// CheckNewUser runs CreateUser's checks of the email address and the name
// that need no store, so that a batch of new users can be checked whole
// before any is created. It returns the address as CreateUser stores it.
func CheckNewUser(nu NewUser) (string, error) {
	email, err := NormaliseEmail(nu.Email)
	if err != nil {
		return "", err
	}
	_, err = validateName(nu.Name)
	return email, err
}

// CreateUser creates an active user. It returns the user and, when no
// initial password was given, a one-time enrolment secret (valid
// EnrolmentTTL) with which the user sets a first password.
func (s *Service) CreateUser(ctx context.Context, tenantID string, nu NewUser) (User, string, error) {
	email, err := NormaliseEmail(nu.Email)
	if err != nil {
		return User{}, "", err
	}
	name, err := validateName(nu.Name)
	if err != nil {
		return User{}, "", err
	}
	if nu.Source == "" {
		nu.Source = "local"
	}
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return User{}, "", err
	}
	var hash string
	if nu.Password != "" {
		if err := s.checkNewPassword(ctx, pol.Password, nu.Password, nu.Privileged, []string{email, name}, nil); err != nil {
			return User{}, "", err
		}
		if hash, err = password.Hash(nu.Password, hashParams(pol.Password)); err != nil {
			return User{}, "", fmt.Errorf("hash password: %w", err)
		}
	}
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return User{}, "", err
	}
	emailEnc, err := c.SealString("user.email", email)
	if err != nil {
		return User{}, "", err
	}
	nameEnc, err := c.SealString("user.name", name)
	if err != nil {
		return User{}, "", err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, "", err
	}
	now := s.now().Truncate(time.Microsecond)
	u := User{ID: id.String(), TenantID: tenantID, Email: email, Name: name, Status: StatusActive, Source: nu.Source,
		HasPassword: hash != "", MustChangePassword: hash != "", CreatedAt: now}
	var enrol string
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var pwHash any
		var pwAt any
		if hash != "" {
			pwHash, pwAt = hash, micros(now)
			u.PasswordChangedAt = &now
		}
		_, err := tx.Exec(ctx, `INSERT INTO users (tenant_id, id, email_enc, email_bidx, name_enc, status, source,
			password_hash, password_changed_at, must_change_password, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $10)`,
			u.ID, emailEnc, c.Index("user.email", email), nameEnc, nu.Source, pwHash, pwAt, hash != "", micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a user with this email exists in the tenant", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if hash != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO password_history (tenant_id, user_id, hash, created_at) VALUES ($1, $2, $3, $4)`,
				u.ID, hash, micros(now)); err != nil {
				return fmt.Errorf("password history: %w", err)
			}
		} else if nu.Source == "local" {
			// Users from an identity provider (oidc, saml, scim) sign in
			// there: no enrolment link that would let them set a password.
			enrol = newSecret(prefixEnrol, tenantID)
			if _, err := tx.Exec(ctx, `INSERT INTO user_tokens (token_hash, tenant_id, user_id, purpose, expires_at) VALUES ($2, $1, $3, 'enrol', $4)`,
				hashSecret(enrol), u.ID, micros(now.Add(EnrolmentTTL))); err != nil {
				return fmt.Errorf("enrolment token: %w", err)
			}
		}
		// What the audit says about the first password (never the value).
		pwState := "set"
		switch {
		case hash == "" && enrol != "":
			pwState = "enrolment link" // #nosec G101 -- a description, not a credential
		case hash == "":
			pwState = "none (identity provider)"
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "user.create", ObjectType: "user", ObjectID: u.ID,
			Changes: []audit.Change{{Field: "email", Personal: true}, {Field: "name", Personal: true}, {Field: "status", After: StatusActive},
				{Field: "source", After: nu.Source}, {Field: "password", After: pwState}}})
		return err
	})
	if err != nil {
		return User{}, "", err
	}
	return u, enrol, nil
}

const userColumns = `id, email_enc, name_enc, status, source, password_hash IS NOT NULL, password_changed_at,
	must_change_password, locked_until, locked_permanent, totp_enabled, last_login_at, created_at`

func (s *Service) scanUser(c *tenants.Crypto, sc interface{ Scan(...any) error }) (User, error) {
	var u User
	var emailEnc, nameEnc []byte
	var pwAt, lastLogin *int64
	var lockedUntil, created int64
	var permanent bool
	if err := sc.Scan(&u.ID, &emailEnc, &nameEnc, &u.Status, &u.Source, &u.HasPassword, &pwAt, &u.MustChangePassword,
		&lockedUntil, &permanent, &u.TOTPEnabled, &lastLogin, &created); err != nil {
		return User{}, err
	}
	u.TenantID = c.TenantID()
	var err error
	if u.Email, err = c.OpenString("user.email", emailEnc); err != nil {
		return User{}, fmt.Errorf("decrypt user email: %w", err)
	}
	if u.Name, err = c.OpenString("user.name", nameEnc); err != nil {
		return User{}, fmt.Errorf("decrypt user name: %w", err)
	}
	u.PasswordChangedAt, u.LastLoginAt = fromMicrosPtr(pwAt), fromMicrosPtr(lastLogin)
	u.CreatedAt = store.FromMicros(created)
	now := s.now()
	if permanent {
		u.Locked = true
	} else if lockedUntil > micros(now) {
		u.Locked = true
		t := store.FromMicros(lockedUntil)
		u.LockedUntil = &t
	}
	return u, nil
}

// GetUser returns a user by id.
func (s *Service) GetUser(ctx context.Context, tenantID, userID string) (User, error) {
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return User{}, err
	}
	var u User
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		u, err = s.scanUser(c, tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND id = $2`, userID))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return User{}, fmt.Errorf("%w: user %q", ErrNotFound, userID)
	}
	return u, wrap("get user", err)
}

// FindUserByEmail finds a user through the blind index.
func (s *Service) FindUserByEmail(ctx context.Context, tenantID, email string) (User, error) {
	e, err := NormaliseEmail(email)
	if err != nil {
		return User{}, err
	}
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return User{}, err
	}
	var u User
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		u, err = s.scanUser(c, tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND email_bidx = $2`, c.Index("user.email", e)))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return User{}, fmt.Errorf("%w: no user with that email", ErrNotFound)
	}
	return u, wrap("find user", err)
}

// ListUsers returns the tenant's users (decrypted), oldest first.
func (s *Service) ListUsers(ctx context.Context, tenantID string) ([]User, error) {
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var out []User
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = $1 ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			u, err := s.scanUser(c, rows)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, wrap("list users", err)
}

// SetUserStatus enables or disables a user. Disabling revokes every session
// and every API token of the user at once (ACC-5).
func (s *Service) SetUserStatus(ctx context.Context, tenantID, userID, status string) error {
	if status != StatusActive && status != StatusDisabled {
		return &ValidationError{Field: "status", Message: "must be active or disabled"}
	}
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var before string
		if err := tx.QueryRow(ctx, `SELECT status FROM users WHERE tenant_id = $1 AND id = $2`, userID).Scan(&before); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: user %q", ErrNotFound, userID)
			}
			return err
		}
		now := micros(s.now())
		if _, err := tx.Exec(ctx, `UPDATE users SET status = $3, token_version = token_version + 1, updated_at = $4 WHERE tenant_id = $1 AND id = $2`,
			userID, status, now); err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		revoked := int64(0)
		if status == StatusDisabled {
			res, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL`, userID, now)
			if err != nil {
				return fmt.Errorf("revoke sessions: %w", err)
			}
			revoked, _ = res.RowsAffected()
		}
		action := map[string]string{StatusActive: "user.enable", StatusDisabled: "user.disable"}[status]
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: action, ObjectType: "user", ObjectID: userID,
			Changes: []audit.Change{{Field: "status", Before: before, After: status}}, Details: map[string]any{"sessions_revoked": revoked}})
		return err
	})
}

// Unlock clears a user's lock and failure counter (AUTH-4 permanent lock).
func (s *Service) Unlock(ctx context.Context, tenantID, userID string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE users SET failed_count = 0, locked_until = 0, locked_permanent = FALSE, lock_count = 0, updated_at = $3
			WHERE tenant_id = $1 AND id = $2`, userID, micros(s.now()))
		if err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: user %q", ErrNotFound, userID)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "user.unlock", ObjectType: "user", ObjectID: userID})
		return err
	})
}

// checkNewPassword applies the tenant's policy: length, classes, identity,
// reuse of the last N, and the breach corpus.
func (s *Service) checkNewPassword(ctx context.Context, pp config.PasswordPolicy, pw string, privileged bool, identity []string, history []string) error {
	pol := password.Seed()
	if pp.Preset == password.PresetNIST {
		pol = password.NIST()
	}
	pol.MinLength, pol.MinClasses = pp.MinLength, pp.MinClasses
	if pp.Preset == password.PresetNIST {
		pol.MinClasses = 0
	}
	if v := pol.Check(pw, privileged, pp.PrivilegedMinLength, identity); len(v) > 0 {
		return &PolicyError{Violations: v}
	}
	if len(history) > 0 && pp.History > 0 {
		if len(history) > pp.History {
			history = history[:pp.History]
		}
		reused, err := password.Reused(pw, history)
		if err != nil {
			return fmt.Errorf("password history: %w", err)
		}
		if reused {
			return &PolicyError{Violations: []password.Violation{{Code: "reused", Message: fmt.Sprintf("must differ from your last %d passwords", pp.History)}}}
		}
	}
	if pp.BreachCheck && s.Breach != nil {
		n, err := s.Breach.Breached(ctx, pw)
		if err != nil {
			return fmt.Errorf("breached-password check unavailable: %w", err)
		}
		if n > 0 {
			return &PolicyError{Violations: []password.Violation{{Code: "breached", Message: "appears in a list of breached passwords; choose another"}}}
		}
	}
	return nil
}

// userPrivileged reports whether the user holds an administrative permission.
func (s *Service) userPrivileged(ctx context.Context, tenantID, userID string) (bool, error) {
	if s.Perms == nil {
		return false, nil
	}
	perms, err := s.Perms.UserPermissionList(ctx, tenantID, userID)
	if err != nil {
		return false, err
	}
	for _, p := range perms {
		if s.Perms.IsAdministrative(p) {
			return true, nil
		}
	}
	return false, nil
}

// ChangePassword sets a new password for a user who proved the current
// one (or holds a valid enrolment secret: see Enrol). It enforces the
// policy and history and revokes the user's other sessions.
func (s *Service) ChangePassword(ctx context.Context, tenantID, userID, current, next string, keepSession []byte) error {
	var hash string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var h *string
		if err := tx.QueryRow(ctx, `SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2 AND status = 'active'`, userID).Scan(&h); err != nil {
			return err
		}
		if h != nil {
			hash = *h
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return ErrInvalidCredentials
	}
	if err != nil {
		return wrap("change password", err)
	}
	if hash == "" {
		return ErrInvalidCredentials
	}
	if ok, err := password.Verify(current, hash); err != nil || !ok {
		return ErrInvalidCredentials
	}
	return s.setPassword(ctx, tenantID, userID, next, "user.password.change", keepSession)
}

func (s *Service) setPassword(ctx context.Context, tenantID, userID, next, action string, keepSession []byte) error {
	apply, err := s.preparePassword(ctx, tenantID, userID, next, action, keepSession)
	if err != nil {
		return err
	}
	return s.DB.Tenant(tenantID).Tx(ctx, apply)
}

// preparePassword checks a new password against the policy and hashes it
// (slow), and returns the transaction step that stores it.
func (s *Service) preparePassword(ctx context.Context, tenantID, userID, next, action string, keepSession []byte) (func(*store.Tx) error, error) {
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	u, err := s.GetUser(ctx, tenantID, userID)
	if err != nil {
		return nil, err
	}
	privileged, err := s.userPrivileged(ctx, tenantID, userID)
	if err != nil {
		return nil, err
	}
	var history []string
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT hash FROM password_history WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT $3`,
			userID, max(pol.Password.History, 1))
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				return err
			}
			history = append(history, h)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("password history", err)
	}
	if err := s.checkNewPassword(ctx, pol.Password, next, privileged, []string{u.Email, u.Name}, history); err != nil {
		return nil, err
	}
	hash, err := password.Hash(next, hashParams(pol.Password))
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	now := s.now()
	return func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = $3, password_changed_at = $4, must_change_password = FALSE, updated_at = $4
			WHERE tenant_id = $1 AND id = $2`, userID, hash, micros(now)); err != nil {
			return fmt.Errorf("update password: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO password_history (tenant_id, user_id, hash, created_at) VALUES ($1, $2, $3, $4)`, userID, hash, micros(now)); err != nil {
			return fmt.Errorf("password history: %w", err)
		}
		// Keep only what the policy needs.
		if _, err := tx.Exec(ctx, `DELETE FROM password_history WHERE tenant_id = $1 AND user_id = $2 AND created_at NOT IN
			(SELECT created_at FROM password_history WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT $3)`,
			userID, max(pol.Password.History, 1)); err != nil {
			return fmt.Errorf("trim password history: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL AND id_hash <> $4`,
			userID, micros(now), keepSession); err != nil {
			return fmt.Errorf("revoke other sessions: %w", err)
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: action, ObjectType: "user", ObjectID: userID,
			Changes: []audit.Change{{Field: "password", Personal: true}}})
		return err
	}, nil
}

// Enrol sets a first password with a one-time enrolment secret.
func (s *Service) Enrol(ctx context.Context, secret, newPassword string) (User, error) {
	tenantID, ok := splitSecret(prefixEnrol, secret)
	if !ok {
		return User{}, ErrInvalidCredentials
	}
	var userID string
	now := s.now()
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		// A disabled user's enrolment link is dead too.
		return tx.QueryRow(ctx, `SELECT t.user_id FROM user_tokens t JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
			WHERE t.tenant_id = $1 AND t.token_hash = $2 AND t.used_at IS NULL AND t.expires_at > $3 AND u.status = 'active'`,
			hashSecret(secret), micros(now)).Scan(&userID)
	})
	if err != nil {
		return User{}, ErrInvalidCredentials
	}
	apply, err := s.preparePassword(ctx, tenantID, userID, newPassword, "user.enrol", nil)
	if err != nil {
		return User{}, err
	}
	// Consume the secret and set the password in one transaction: a
	// secret used twice at once sets the password once.
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE user_tokens SET used_at = $3 WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL`, hashSecret(secret), micros(now))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrInvalidCredentials
		}
		return apply(tx)
	})
	if err != nil {
		return User{}, err
	}
	return s.GetUser(ctx, tenantID, userID)
}
