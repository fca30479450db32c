-- `TRUNCATE users` empties the email and login lookup tables too. Their row trigger
-- (users_sync_lookups) does not fire on TRUNCATE, and they have no foreign key to
-- `users` (one over hundreds of millions of rows would cost a check on every write and
-- a scan on every delete), so a truncate left every email and login taken for good:
-- signups with them were 409 email_taken. A statement trigger costs nothing per row.
-- (It fires for `users` itself; truncating one of its partitions is not covered: use
-- DELETE there, which the row trigger follows.)
CREATE FUNCTION users_truncate_lookups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE user_emails, user_logins;
    RETURN NULL;
END $$;

CREATE TRIGGER users_truncate_lookups AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION users_truncate_lookups();
