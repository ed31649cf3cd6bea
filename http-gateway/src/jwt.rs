//! JWT identities from the operator's identity provider (`[auth] mode = "jwt"`).
//!
//! Owns: the issuer's public keys (a JWKS document, RFC 7517, re-read when
//! the file changes), and the verification of one bearer token into a
//! [`JwtIdentity`]: the user is `sub`, roles come from the OAuth 2.0 `scope`
//! claim (space-separated; [`SCOPE_ADMIN`], [`SCOPE_SCAN`]).
//!
//! Rules (checked with the `jsonwebtoken` crate):
//! - the header's `alg` must be `EdDSA` (Ed25519), `ES256` or `RS256`, and
//!   the key's type must match it: `none` does not parse, HS* and everything
//!   else are refused before any key is tried, so a public key can never be
//!   used as an HMAC secret;
//! - the key is the one named by `kid`, or, without a `kid`, any key of the
//!   matching type; keys marked `use: "enc"` or with another `alg` are skipped;
//! - `exp`, `iss`, `aud` and `sub` are required; `exp` and `nbf` are checked
//!   with [`JwtSettings::leeway_s`] of clock skew; `iss` and `aud` must equal
//!   the configured values (an `aud` array must contain it);
//! - `sub` is 1..=128 bytes without control characters or spaces (it becomes
//!   the holder name in replicated state).
//!
//! Must not: fetch keys over the network (the operator's tooling writes the
//! file; see the README) or log a token. Caveat: a key removed from the file
//! stops working within [`JWKS_POLL_MS`]; until then tokens it signed verify.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::settings::{AuthSettings, SettingsError};

/// The scope that makes a user an operator (events, sales, every hold).
pub const SCOPE_ADMIN: &str = "booking:admin";
/// The scope that lets door staff check tickets in.
pub const SCOPE_SCAN: &str = "booking:scan";
/// How often the JWKS file is looked at for changes, in ms.
pub const JWKS_POLL_MS: u64 = 5_000;
/// Longest token we try to decode, in bytes.
pub const TOKEN_LEN_MAX: usize = 8 * 1024;
/// Most keys kept from one JWKS document.
const KEYS_MAX: usize = 64;
/// Largest JWKS file read, in bytes.
const JWKS_FILE_LEN_MAX: u64 = 1024 * 1024;
/// Longest `sub` accepted (the state machine's holder bound).
const SUBJECT_LEN_MAX: usize = state_machine::limits::MAX_HOLDER_LEN;

/// What a valid token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtIdentity {
    /// `sub`: the user name in holds, bookings and tickets.
    pub user: String,
    /// `scope` contains `booking:admin`.
    pub admin: bool,
    /// `scope` contains `booking:scan`.
    pub scan: bool,
}

/// Why a token was refused (the client sees one 401 for all of them; the
/// reason is logged at debug level).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted (EdDSA, ES256, RS256 only)")]
    Algorithm(String),
    #[error("no key of the issuer verifies it")]
    NoKey,
    #[error("{0}")]
    Invalid(String),
    #[error("sub is missing, too long or not printable")]
    Subject,
}

/// The verification parameters, from `[auth]`.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub keys_file: PathBuf,
    pub leeway_s: u64,
}

impl JwtSettings {
    /// From `[auth]`; the missing key is named (the settings check ran first).
    pub fn from_auth(auth: &AuthSettings) -> Result<JwtSettings, SettingsError> {
        let need = |v: &Option<String>, key: &'static str| {
            v.clone().ok_or(SettingsError::Invalid {
                key,
                message: "required with [auth] mode = \"jwt\"".into(),
            })
        };
        Ok(JwtSettings {
            issuer: need(&auth.jwt_issuer, "[auth] jwt_issuer")?,
            audience: need(&auth.jwt_audience, "[auth] jwt_audience")?,
            keys_file: auth.jwt_keys_file.clone().ok_or(SettingsError::Invalid {
                key: "[auth] jwt_keys_file",
                message: "required with [auth] mode = \"jwt\"".into(),
            })?,
            leeway_s: auth.jwt_leeway_s,
        })
    }
}

/// One usable public key.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The file's identity when last read, to notice a change.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Verifies bearer JWTs against the issuer's keys.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    stamp: Mutex<Option<FileStamp>>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
}

impl JwtVerifier {
    /// Reads the JWKS file; refuses to start when it is missing, malformed
    /// or holds no usable key (the message names `[auth] jwt_keys_file`).
    pub fn load(settings: JwtSettings) -> Result<JwtVerifier, SettingsError> {
        let (keys, stamp) = read_keys(&settings.keys_file)?;
        Ok(JwtVerifier {
            settings,
            keys: RwLock::new(Arc::new(keys)),
            stamp: Mutex::new(Some(stamp)),
        })
    }

    /// Re-reads the key file if it changed. A bad new file is logged and the
    /// old keys stay in force (a half-written file must not lock users out).
    pub fn reload_if_changed(&self) {
        let path = &self.settings.keys_file;
        let now = file_stamp(path).ok();
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_none() || now == *last {
            return;
        }
        match read_keys(path) {
            Ok((keys, stamp)) => {
                tracing::info!(path = %path.display(), keys = keys.len(), "JWKS reloaded");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                *last = Some(stamp);
            }
            Err(e) => {
                tracing::error!(error = %e, "JWKS file changed but cannot be used; keeping the old keys");
                *last = now;
            }
        }
    }

    /// The identity in a valid token.
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        if token.len() > TOKEN_LEN_MAX {
            return Err(JwtError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !matches!(
            header.alg,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
        ) {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut last = JwtError::NoKey;
        for k in keys.iter().filter(|k| {
            k.alg == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        }) {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &validation) {
                Ok(data) => return identity(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    match e.kind() {
                        // Another key of the set may verify it.
                        K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => {}
                        _ => return Err(JwtError::Invalid(e.to_string())),
                    }
                    last = JwtError::NoKey;
                }
            }
        }
        Err(last)
    }
}

fn identity(claims: Claims) -> Result<JwtIdentity, JwtError> {
    let sub = claims.sub;
    if sub.is_empty()
        || sub.len() > SUBJECT_LEN_MAX
        || sub.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(JwtError::Subject);
    }
    let scopes = claims.scope.unwrap_or_default();
    let has = |s: &str| scopes.split_ascii_whitespace().any(|x| x == s);
    Ok(JwtIdentity {
        admin: has(SCOPE_ADMIN),
        scan: has(SCOPE_SCAN),
        user: sub,
    })
}

fn file_stamp(path: &Path) -> std::io::Result<FileStamp> {
    let meta = std::fs::metadata(path)?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The usable keys of a JWKS file, and the file's stamp.
fn read_keys(path: &Path) -> Result<(Vec<VerifyKey>, FileStamp), SettingsError> {
    let err = |message: String| SettingsError::Invalid {
        key: "[auth] jwt_keys_file",
        message: format!("{}: {message}", path.display()),
    };
    let stamp = file_stamp(path).map_err(|e| err(e.to_string()))?;
    if stamp.len > JWKS_FILE_LEN_MAX {
        return Err(err(format!("larger than {JWKS_FILE_LEN_MAX} bytes")));
    }
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| err(format!("not a JWKS document ({{\"keys\": [...]}}): {e}")))?;
    let mut keys = Vec::new();
    for jwk in set.keys.iter().take(KEYS_MAX) {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            // Symmetric (`oct`) keys and other curves are never accepted.
            _ => continue,
        };
        let declared_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
            Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
            Some(_) => false,
        };
        if !declared_ok {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        keys.push(VerifyKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err(err(
            "no usable key: the gateway takes Ed25519 (OKP, EdDSA), P-256 (EC, ES256) and RSA (RS256) public keys"
                .into(),
        ));
    }
    Ok((keys, stamp))
}
