// Package jwtauth issues and verifies the API's short-lived access tokens
// (control AUTH-8): JSON Web Tokens obtained with the OAuth 2.0 client
// credentials grant (RFC 6749 §4.4), in the RFC 9068 profile ("typ" at+jwt),
// signed with Ed25519 ("alg" EdDSA).
//
// Three types serve every use:
//
//   - [KeyStore] holds the platform's signing keys: it creates and rotates
//     them ([KeyStore.EnsureCurrent], to be called at start-up and then
//     periodically, every few minutes), deletes those no token can still
//     use ([KeyStore.Prune]) and publishes the public halves
//     ([KeyStore.JWKS], RFC 7517). Private keys are stored only wrapped by
//     the master key ([keys.MasterKey]), bound to their kid.
//   - [Issuer] signs a token for an authenticated API credential
//     ([Issuer.Issue]); the token endpoint calls it after checking the
//     client's secret.
//   - [Verifier] checks a bearer token on every API request
//     ([Verifier.Verify]) and returns its [Claims]. It pins the algorithm,
//     the type, the issuer and the audience, requires an expiry, and keeps
//     an in-memory cache of verified tokens so that the common case costs a
//     SHA-256 and a map lookup. Its errors are one of three sentinels
//     ([ErrMalformed], [ErrExpired], [ErrInvalid]) so that the HTTP layer
//     answers 401 with a stable code; the text of the error, which says
//     more, is for logs only.
//
// # Revocation is the caller's job
//
// A verified token proves only that Relais signed it and that it has not
// expired. It does not prove that the credential that obtained it is still
// active: this package never looks at credentials. Every token carries the
// issuing credential's token version in [Claims.Version] ("ver"). Revoking a
// credential (disabling it, rotating its secret, deprovisioning, ACC-5)
// increments that version; the caller of [Verifier.Verify] MUST then compare
// Claims.Version with the credential's current version (and check that the
// credential is still active), for example through a short-lived cache of its
// own, and refuse the request when they differ. Without that check a revoked
// credential's tokens stay usable until they expire (at most [MaxLifetime]).
//
// # Keys and rotation
//
// A key signs for at most RotateEvery (30 days by default) after its
// creation (its retire_at), then keeps verifying for Overlap (by default twice
// [MaxLifetime]) so that every token it signed expires before it does (its
// expires_at); Prune then deletes it. [KeyStore.EnsureCurrent] creates the
// next key Prepublish (by default one hour) before the current one retires,
// so that the new key appears in the JWKS and in every node's key cache
// before any token is signed with it. The newest key that is old enough
// (created at least Prepublish ago) and not retired signs; when there is none
// (the very first key, or a rotation that came late) the newest non-retired key
// signs at once.
//
// Several nodes share the store. EnsureCurrent serialises on the database
// (SQLite takes its write lock at BEGIN; on PostgreSQL a transaction-scoped
// advisory lock is taken), so two nodes calling it at once create one key.
// Should two keys nevertheless be created (nodes configured with different
// periods, or a lock lost), nothing breaks: both are valid for verification,
// kids are random so they cannot collide, and every node signs with the newest
// once its key cache refreshes.
//
// A key read from the database is trusted only when its private half unwraps
// under the master key (with the kid as associated data) and matches the
// stored public key: write access to the database alone does not let anyone
// add a verification key.
//
// Each node keeps the keys in memory. A token whose kid is unknown triggers
// one reload from the database, at most one per second per node (a flood of
// forged kids cannot turn into a flood of queries); token signing reloads
// when its view is older than a minute. Key creation, retirement and
// deletion are recorded in the platform audit log (category key).
//
// Formats: a kid is 128 random bits in unpadded base64url; public_key holds
// the 32-byte Ed25519 public key; private_wrap holds
// MasterKey.Wrap(seed, "relais/jwt-signing-key/v1|" + kid), where seed is the
// 32-byte RFC 8032 private key. Token times have a resolution of one second.
package jwtauth
