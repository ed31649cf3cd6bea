//! Who is calling: the bearer token of a request, resolved once into an
//! [`Identity`] (by the rate-limit middleware, which needs the user), and
//! the extractors handlers ask for.
//!
//! Owns: [`Identity`], [`User`] (a signed-in user), [`Admin`] (the admin
//! token, or a JWT with `booking:admin`), [`Scanner`] (door staff: a JWT
//! with `booking:scan`, or an operator) and [`Caller`] (a user or an
//! operator). Must not: decide ownership of holds and bookings (handlers
//! compare the holder; the state machine checks it again for commands).
//!
//! Tokens, by `[auth] mode`:
//! - `jwt`: a JWT from the configured issuer ([`crate::jwt`]); the user is
//!   `sub`, roles from `scope`. Demo session tokens are refused.
//! - `demo`: a session token from `POST /v1/sessions` ([`crate::keys`]).
//! - either mode: the admin token (compared in constant time).
//!
//! The scheme is matched without regard to case (`Bearer`, `bearer`,
//! `BEARER`), so every spelling is the same user to the rate limiter.
//! Caveats: a missing or bad token is 401 (one answer for every reason, so a
//! caller learns nothing about the keys); a valid token without the role a
//! route needs is 403.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::problem::Problem;
use crate::settings::AuthMode;
use crate::{unix_now_s, AppState};

/// A signed-in user and their roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user name (JWT `sub`, or the demo session's name).
    pub name: String,
    /// `booking:admin`.
    pub admin: bool,
    /// `booking:scan`.
    pub scan: bool,
}

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No `Authorization` header.
    Anonymous,
    /// A header that is not a valid bearer token of this gateway.
    Invalid,
    /// The admin token.
    Admin,
    User(Principal),
}

impl Identity {
    /// The user name, for the per-user rate limit.
    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::User(p) => Some(&p.name),
            _ => None,
        }
    }
}

/// The bearer token of a request, if any (scheme matched in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Resolves the request's token. Cheap for the admin token and demo
/// sessions; one signature check for a JWT.
pub fn identify(headers: &HeaderMap, state: &AppState) -> Identity {
    if headers.get(AUTHORIZATION).is_none() {
        return Identity::Anonymous;
    }
    let Some(token) = bearer(headers) else {
        return Identity::Invalid;
    };
    if let Some(admin) = state.keys.admin_token() {
        if bool::from(token.as_bytes().ct_eq(admin.as_bytes())) {
            return Identity::Admin;
        }
    }
    match state.settings.auth.mode {
        AuthMode::Demo => match state.keys.verify_session(token, unix_now_s()) {
            Some(claims) => Identity::User(Principal {
                name: claims.sub,
                admin: false,
                scan: false,
            }),
            None => Identity::Invalid,
        },
        AuthMode::Jwt => {
            let Some(verifier) = &state.jwt else {
                return Identity::Invalid;
            };
            match verifier.verify(token) {
                Ok(id) => Identity::User(Principal {
                    name: id.user,
                    admin: id.admin,
                    scan: id.scan,
                }),
                Err(e) => {
                    tracing::debug!(reason = %e, "bearer JWT refused");
                    Identity::Invalid
                }
            }
        }
    }
}

/// The identity the middleware stored, or a fresh look (routers built
/// without the middleware, in unit tests).
fn identity_of(parts: &Parts, state: &AppState) -> Identity {
    match parts.extensions.get::<Identity>() {
        Some(id) => id.clone(),
        None => identify(&parts.headers, state),
    }
}

fn unauthorized(id: &Identity) -> Problem {
    match id {
        Identity::Anonymous => Problem::unauthorized("missing Authorization: Bearer <token>"),
        _ => Problem::unauthorized("invalid or expired token"),
    }
}

/// A signed-in user: the name from a valid session token or JWT.
#[derive(Clone, Debug)]
pub struct User(pub String);

/// An operator: the admin token, or a JWT with `booking:admin`.
#[derive(Clone, Debug)]
pub struct Admin;

/// Door staff: a JWT with `booking:scan`, or an operator.
#[derive(Clone, Debug)]
pub struct Scanner;

/// A user or an operator (who may see every hold, booking and ticket).
#[derive(Clone, Debug)]
pub enum Caller {
    User(String),
    Admin,
}

impl Caller {
    /// May this caller see something held by `holder`?
    pub fn may_see(&self, holder: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::User(name) => name == holder,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identity_of(parts, state) {
            Identity::Admin => Ok(Caller::Admin),
            Identity::User(p) if p.admin => Ok(Caller::Admin),
            Identity::User(p) => Ok(Caller::User(p.name)),
            other => Err(unauthorized(&other)),
        }
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identity_of(parts, state) {
            Identity::User(p) => Ok(User(p.name)),
            Identity::Admin => Err(Problem::forbidden(
                "user_only",
                "this call needs a user's token",
            )),
            other => Err(unauthorized(&other)),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identity_of(parts, state) {
            Identity::Admin => Ok(Admin),
            Identity::User(p) if p.admin => Ok(Admin),
            Identity::User(_) => Err(Problem::forbidden(
                "admin_only",
                "this call needs the admin token or the booking:admin scope",
            )),
            other => Err(unauthorized(&other)),
        }
    }
}

impl FromRequestParts<AppState> for Scanner {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identity_of(parts, state) {
            Identity::Admin => Ok(Scanner),
            Identity::User(p) if p.admin || p.scan => Ok(Scanner),
            Identity::User(_) => Err(Problem::forbidden(
                "scan_only",
                "checking tickets in needs the booking:scan scope",
            )),
            other => Err(unauthorized(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_scheme_in_any_case() {
        // Goal: `Bearer`, `bearer` and `BEARER` name the same token.
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let mut h = HeaderMap::new();
            h.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("{scheme}  tok ")).unwrap(),
            );
            assert_eq!(bearer(&h), Some("tok"), "{scheme}");
        }
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
