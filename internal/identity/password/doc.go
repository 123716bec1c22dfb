// Package password stores, checks and judges the passwords of Relais users:
// salted, slow hashing (AUTH-9), the password policy (AUTH-10) and the check
// against breached passwords (AUTH-11).
//
// # Which functions to use
//
// When a user sets a password, check it against the tenant's policy and the
// breach corpus, refuse it if it is one of the user's last hashes, then hash
// it and store the encoded string:
//
//	if v := policy.Check(pw, isAdmin, 20, []string{email, fullName}); len(v) > 0 { ... }
//	if n, err := breach.Breached(ctx, pw); err == nil && n > 0 { ... }
//	if reused, err := password.Reused(pw, lastFiveHashes); reused { ... }
//	encoded, err := password.Hash(pw, password.DefaultPBKDF2())
//
// At login, look the user up; if there is none, still spend the time a real
// check would take, so that the response time does not reveal which accounts
// exist. After a successful check, upgrade the stored hash when the tenant's
// parameters have risen:
//
//	if !found {
//		password.DummyVerify(password.DefaultPBKDF2())
//		return errLoginFailed
//	}
//	ok, err := password.Verify(pw, stored)
//	if ok && password.NeedsRehash(stored, password.DefaultPBKDF2()) {
//		newEncoded, err := password.Hash(pw, password.DefaultPBKDF2())
//		...
//	}
//
// # Encoded hashes
//
// [Hash] returns a self-describing string in the style of the PHC string
// format, so that a stored hash carries its own algorithm and cost and old
// hashes keep verifying after the defaults rise:
//
//	$pbkdf2-sha256$i=600000$<salt>$<key>
//	$argon2id$v=19$m=65536,t=3,p=2$<salt>$<key>
//
// Salt and key are standard base64 without padding; the salt is 16 random
// bytes and the key 32 bytes. [Verify] treats a stored hash as untrusted
// input: it parses it strictly and refuses costs above fixed bounds (see
// [MaxPBKDF2Iterations], [MaxArgon2Memory]), so that a hash planted in the
// database cannot make a login burn minutes of CPU or gigabytes of memory.
//
// # Secrets
//
// No function of this package puts a password, a derived key or a stored
// hash into an error. Errors can be tested with [errors.Is]: [ErrMalformed]
// (a stored hash that does not parse or is out of bounds), [ErrTooLong]
// (a password longer than [MaxPasswordBytes]), [ErrInvalidParams] (hashing
// parameters out of bounds) and [ErrBadRange] (a breach corpus range that
// does not parse).
package password
