-- Whether the account's password hash may be of a password as a client sent it, not
-- in Unicode NFC: true for every hash made before passwords were normalised (sign-in
-- then tries the password as sent too, and rehashes it in NFC once it matches),
-- false for every hash made since. Without it, every sign-in with a password not in
-- NFC cost two Argon2 runs, for unknown accounts too: twice the CPU per guess.
-- Existing rows read true (the default when the column is added, kept in the
-- catalogue, so the partitioned table is not rewritten); rows written from now on
-- false. An older instance still running during the upgrade writes NFC hashes too.
ALTER TABLE users ADD COLUMN password_unnormalised boolean NOT NULL DEFAULT true;
ALTER TABLE users ALTER COLUMN password_unnormalised SET DEFAULT false;
