//! Who is calling: the `Authorization: Bearer` extractors.
//!
//! Owns: [`User`] (a valid session token), [`Admin`] (the configured admin
//! token) and [`Caller`] (either). Must not: decide ownership of holds and
//! bookings (handlers compare the holder; the state machine checks it again
//! for commands).
//!
//! Caveats: a missing or bad token is 401; a valid user token on an admin
//! route is 403. The admin token is compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use crate::problem::Problem;
use crate::{unix_now_s, AppState};

/// A signed-in user: the name from a valid session token.
#[derive(Clone, Debug)]
pub struct User(pub String);

/// The admin.
#[derive(Clone, Debug)]
pub struct Admin;

/// A user or the admin (who may see every hold, booking and ticket).
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

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn identify(parts: &Parts, state: &AppState) -> Result<Caller, Problem> {
    let token = bearer(parts)
        .ok_or_else(|| Problem::unauthorized("missing Authorization: Bearer <token>"))?;
    if bool::from(
        token
            .as_bytes()
            .ct_eq(state.settings.admin_token.as_bytes()),
    ) {
        return Ok(Caller::Admin);
    }
    match state.keys.verify_session(token, unix_now_s()) {
        Some(claims) => Ok(Caller::User(claims.sub)),
        None => Err(Problem::unauthorized("invalid or expired token")),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        identify(parts, state)
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identify(parts, state)? {
            Caller::User(name) => Ok(User(name)),
            Caller::Admin => Err(Problem::forbidden(
                "user_only",
                "this call needs a user session token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identify(parts, state)? {
            Caller::Admin => Ok(Admin),
            Caller::User(_) => Err(Problem::forbidden(
                "admin_only",
                "this call needs the admin token",
            )),
        }
    }
}
