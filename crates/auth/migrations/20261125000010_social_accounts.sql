-- Social identities linked to accounts: a person at Yandex ID, VK ID, Google or
-- Mail.ru, by the provider's stable user id (`subject`; Google's `sub`). The email is
-- what the provider last asserted, kept for display: it is never a key.
CREATE TABLE social_accounts (
    provider        text        NOT NULL,
    subject         text        NOT NULL,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email           text,
    display_name    text,
    linked_at       timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz,
    -- One identity belongs to at most one account.
    PRIMARY KEY (provider, subject),
    CONSTRAINT social_accounts_provider CHECK (provider IN ('yandex', 'vk', 'google', 'mailru')),
    CONSTRAINT social_accounts_subject_length CHECK (length(subject) BETWEEN 1 AND 255)
);
-- An account links at most one identity per provider, so `DELETE
-- /users/me/social/{provider}` names exactly one.
CREATE UNIQUE INDEX social_accounts_user_provider_key ON social_accounts (user_id, provider);
