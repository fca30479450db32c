-- The lookup trigger of `users` claims the new email or login before it releases the
-- old one. Releasing first let two accounts that swap addresses (or logins) at the same
-- time deadlock: each claim waited for the row the other had released but not yet
-- committed, and PostgreSQL aborted one of them (40P01, a 500). Claiming first, a claim
-- of a value another account still holds fails at once with the unique violation (409
-- `email_taken` / `login_taken`), and a claim only ever waits for another claim, which
-- waits for nothing: no cycle.
CREATE OR REPLACE FUNCTION users_sync_lookups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF TG_OP = 'INSERT' OR NEW.id <> OLD.id OR NEW.email IS DISTINCT FROM OLD.email THEN
            INSERT INTO user_emails (email, user_id) VALUES (NEW.email, NEW.id) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                RAISE unique_violation USING CONSTRAINT = 'user_emails_pkey', TABLE = 'user_emails',
                    MESSAGE = 'duplicate key value violates unique constraint "user_emails_pkey"';
            END IF;
        END IF;
        IF NEW.login IS NOT NULL
           AND (TG_OP = 'INSERT' OR NEW.id <> OLD.id OR lower(NEW.login) IS DISTINCT FROM lower(OLD.login)) THEN
            INSERT INTO user_logins (login, user_id) VALUES (lower(NEW.login), NEW.id) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                RAISE unique_violation USING CONSTRAINT = 'user_logins_pkey', TABLE = 'user_logins',
                    MESSAGE = 'duplicate key value violates unique constraint "user_logins_pkey"';
            END IF;
        END IF;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.email IS DISTINCT FROM OLD.email THEN
            DELETE FROM user_emails WHERE email = OLD.email AND user_id = OLD.id;
        END IF;
        IF OLD.login IS NOT NULL
           AND (TG_OP = 'DELETE' OR NEW.id <> OLD.id OR lower(NEW.login) IS DISTINCT FROM lower(OLD.login)) THEN
            DELETE FROM user_logins WHERE login = lower(OLD.login) AND user_id = OLD.id;
        END IF;
    END IF;
    RETURN NULL;
END $$;
