//! Social sign-in (Yandex ID, VK ID, Google, Mail.ru) against local stand-ins that
//! speak each provider's wire format, and Google against a real OpenID provider.

mod cors;
mod failures;
mod flows;
mod id_tokens;
mod linking;
mod real_oidc;
mod state;
mod support;
