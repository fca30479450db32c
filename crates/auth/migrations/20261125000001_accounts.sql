-- Accounts, roles, sessions and refresh tokens of the Auth service.

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    login         text,
    -- NULL for accounts that only sign in through a social provider.
    password_hash text,
    birth_date    date,
    country       char(2),
    region        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_lower CHECK (email = lower(email))
);
CREATE UNIQUE INDEX users_email_key ON users (email);
-- Logins are unique whatever their case.
CREATE UNIQUE INDEX users_login_key ON users (lower(login));

CREATE TABLE roles (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    permissions text[]      NOT NULL DEFAULT '{}',
    built_in    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_name_key ON roles (name);

CREATE TABLE user_roles (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    uuid        NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

INSERT INTO roles (id, name, description, permissions, built_in) VALUES
    ('00000000-0000-7000-8000-000000000001', 'user', 'Every registered viewer', ARRAY['films.watch.free', 'profile.manage'], true),
    ('00000000-0000-7000-8000-000000000002', 'subscriber', 'A viewer with a paid subscription', ARRAY['films.watch.free', 'films.watch.subscription'], true),
    ('00000000-0000-7000-8000-000000000003', 'admin', 'Staff who manage accounts and roles',
        ARRAY['films.watch.free', 'films.watch.subscription', 'films.watch.all_ages', 'roles.manage', 'users.read'], true);

-- One row per signed-in device: the family of its rotating refresh tokens.
CREATE TABLE sessions (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ip           inet,
    user_agent   text,
    device       text        NOT NULL,
    ended_at     timestamptz,
    -- logout, logout_all, revoked, password_changed, refresh_reuse
    end_reason   text
);
CREATE INDEX sessions_user_live_idx ON sessions (user_id) WHERE ended_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set when this token was exchanged; presenting it again is reuse.
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
