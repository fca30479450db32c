-- Every sign-in attempt, successful or not. The primary key includes the time so the
-- table can be range-partitioned by it (PostgreSQL requires the partition key in
-- every unique index).
CREATE TABLE login_history (
    id             uuid        NOT NULL,
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    -- NULL when the identifier matched no account.
    user_id        uuid,
    ip             inet,
    user_agent     text,
    device         text        NOT NULL,
    -- password, or a social provider: yandex, vk, google, mailru
    method         text        NOT NULL,
    success        boolean     NOT NULL,
    -- NULL on success; else wrong_password, unknown_account, password_not_set, …
    failure_reason text,
    PRIMARY KEY (id, attempted_at),
    CONSTRAINT login_history_outcome CHECK (success = (failure_reason IS NULL))
);
-- A user's own history, newest first, by keyset pagination.
CREATE INDEX login_history_user_time_idx ON login_history (user_id, attempted_at DESC, id DESC);
