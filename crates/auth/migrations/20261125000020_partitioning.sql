-- Accounts split by a hash of their id, the login history by month
-- (docs/partitioning.md). The rows of the earlier, unpartitioned tables move over in
-- this transaction; the foreign keys that pointed at them are re-pointed.
--
-- PostgreSQL requires the partition key in every unique index, so the global
-- uniqueness of emails and logins moves to two lookup tables keyed (and partitioned)
-- by the email and the lower-cased login. A trigger on `users` keeps them in step
-- with every write, so no code path can forget them.

-- pg_partman makes the coming months' partitions and drops expired ones. It is not a
-- "trusted" extension: where the migrating role is no superuser, a DBA runs these two
-- statements once beforehand, and they are no-ops here.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman') THEN
        RAISE EXCEPTION 'the PostgreSQL extension pg_partman is not installed on this server'
            USING HINT = 'Install the package postgresql-<major version>-partman (scripts/services.sh does); see docs/partitioning.md.';
    END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman WITH SCHEMA partman;

-- Monthly bounds are whole months in UTC, whatever the session's time zone.
SET LOCAL TIME ZONE 'UTC';

----------------------------------------------------------------------------- users

ALTER TABLE users RENAME TO users_unpartitioned;
ALTER TABLE users_unpartitioned RENAME CONSTRAINT users_pkey TO users_unpartitioned_pkey;

-- The same columns, defaults and checks as before (LIKE keeps any column a later
-- migration of the earlier schema added), now in 16 hash partitions of the id.
CREATE TABLE users (
    LIKE users_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    CONSTRAINT users_pkey PRIMARY KEY (id)
) PARTITION BY HASH (id);

DO $$
BEGIN
    FOR remainder IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF users FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'users_p' || lpad(remainder::text, 2, '0'), remainder);
    END LOOP;
END $$;

-- Who holds an email: the one unique index on emails, one partition per lookup.
CREATE TABLE user_emails (
    email   text NOT NULL,
    user_id uuid NOT NULL,
    CONSTRAINT user_emails_pkey PRIMARY KEY (email)
) PARTITION BY HASH (email);

-- Who holds a login, by its lower-cased form (logins are unique whatever their case).
CREATE TABLE user_logins (
    login   text NOT NULL,
    user_id uuid NOT NULL,
    CONSTRAINT user_logins_pkey PRIMARY KEY (login),
    CONSTRAINT user_logins_lower CHECK (login = lower(login))
) PARTITION BY HASH (login);

DO $$
BEGIN
    FOR remainder IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF user_emails FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'user_emails_p' || lpad(remainder::text, 2, '0'), remainder);
        EXECUTE format('CREATE TABLE %I PARTITION OF user_logins FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'user_logins_p' || lpad(remainder::text, 2, '0'), remainder);
    END LOOP;
END $$;

-- Claims the new email and login of a row and releases the old ones. A taken email or
-- login fails the statement as a unique violation of user_emails_pkey or
-- user_logins_pkey, which the API answers with 409 email_taken or login_taken. (Raised
-- here by name: the index that notices is a partition's, named user_emails_p07_pkey
-- and so on.) Two concurrent claims of one email serialise on the primary key: the
-- second waits for the first transaction, then fails if it committed.
CREATE FUNCTION users_sync_lookups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.email IS DISTINCT FROM OLD.email THEN
            DELETE FROM user_emails WHERE email = OLD.email AND user_id = OLD.id;
        END IF;
        IF OLD.login IS NOT NULL
           AND (TG_OP = 'DELETE' OR NEW.id <> OLD.id OR lower(NEW.login) IS DISTINCT FROM lower(OLD.login)) THEN
            DELETE FROM user_logins WHERE login = lower(OLD.login) AND user_id = OLD.id;
        END IF;
    END IF;
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
    RETURN NULL;
END $$;

CREATE TRIGGER users_sync_lookups AFTER INSERT OR DELETE OR UPDATE OF id, email, login ON users
    FOR EACH ROW EXECUTE FUNCTION users_sync_lookups();

INSERT INTO users SELECT * FROM users_unpartitioned;

-- Re-point every foreign key to users (user_roles, sessions, social_accounts, and any
-- other) at the partitioned table; adding them checks every existing row again.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT conrelid::regclass AS referencing, conname, pg_get_constraintdef(oid) AS definition
          FROM pg_constraint
         WHERE contype = 'f' AND confrelid = 'users_unpartitioned'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.referencing, fk.conname);
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.referencing, fk.conname,
                       regexp_replace(fk.definition, 'REFERENCES (\S+\.)?users_unpartitioned\(', 'REFERENCES users('));
    END LOOP;
END $$;

DROP TABLE users_unpartitioned;

--------------------------------------------------------------------- login history

ALTER TABLE login_history RENAME TO login_history_unpartitioned;
ALTER TABLE login_history_unpartitioned RENAME CONSTRAINT login_history_pkey TO login_history_unpartitioned_pkey;
ALTER INDEX login_history_user_time_idx RENAME TO login_history_unpartitioned_user_time_idx;

-- Monthly ranges of the attempt's time. Each partition gets its own copy of both
-- indexes; a month is retired by dropping its partition, never by DELETE.
CREATE TABLE login_history (
    LIKE login_history_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    CONSTRAINT login_history_pkey PRIMARY KEY (id, attempted_at)
) PARTITION BY RANGE (attempted_at);
-- A user's own history, newest first, by keyset pagination.
CREATE INDEX login_history_user_time_idx ON login_history (user_id, attempted_at DESC, id DESC);

-- Partitions from the month of the oldest moved row (or, when there is none, four
-- months back) to four months ahead, plus a default partition that catches a row
-- outside them instead of failing the sign-in that wrote it. pg_partman 4 (Debian 12,
-- Ubuntu 22.04) needs p_type 'native'; pg_partman 5 (Debian 13, Ubuntu 24.04) knows
-- only native partitioning and refuses the word.
DO $$
DECLARE
    parent text := current_schema() || '.login_history';
    start_partition text := (SELECT to_char(date_trunc('month', min(attempted_at)), 'YYYY-MM-DD HH24:MI:SS')
                               FROM login_history_unpartitioned);
BEGIN
    IF (SELECT extversion FROM pg_extension WHERE extname = 'pg_partman') LIKE '4.%' THEN
        PERFORM partman.create_parent(p_parent_table := parent, p_control := 'attempted_at', p_type := 'native',
                                      p_interval := '1 month', p_premake := 4, p_start_partition := start_partition);
    ELSE
        PERFORM partman.create_parent(p_parent_table := parent, p_control := 'attempted_at',
                                      p_interval := '1 month', p_premake := 4, p_start_partition := start_partition);
    END IF;
END $$;
-- Keep making partitions ahead of the clock even in a month without sign-ins, and
-- drop (not merely detach) expired ones. The retention itself is written by Auth from
-- AUTH_LOGIN_HISTORY_RETENTION_MONTHS at each maintenance run; until then nothing
-- expires.
UPDATE partman.part_config
   SET infinite_time_partitions = true, retention_keep_table = false, retention_keep_index = false
 WHERE parent_table = current_schema() || '.login_history';

INSERT INTO login_history SELECT * FROM login_history_unpartitioned;
DROP TABLE login_history_unpartitioned;
