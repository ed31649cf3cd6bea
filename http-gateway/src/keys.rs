//! Secrets and the signed tokens made with them: demo session tokens,
//! waiting-room tokens, the ticket signing key, the webhook secret and the
//! admin token.
//!
//! Owns: loading every secret ([`Keys::load`]), creating the missing ones
//! ([`load_or_create_hex32`]), and the compact signed formats:
//! - session token (demo mode): `b64url(json{sub,exp}) "." b64url(HMAC-SHA256(secret, "session." payload))`
//! - waiting-room token: `b64url(json{e,u,p,t}) "." b64url(HMAC-SHA256(secret, "queue2." payload))`
//!   (event, user, position in line, issue time in ms since the epoch);
//!   signed with the session secret, which every gateway of a deployment
//!   shares, so any gateway verifies any gateway's token. The domain
//!   `queue2.` retires the position-less tokens of the per-fan room.
//!
//! Where secrets come from: each is its own file of random bytes (hex),
//! mode 0600, created atomically on first start when missing, under
//! `[gateway] data_dir` unless a key names another path:
//! - session secret: `[gateway] session_secret_file` (`session-secret`);
//! - ticket key: `[gateway] ticket_key_file` (`ticket-key.hex`, an Ed25519 seed);
//! - webhook secret: `[payments] webhook_secret_file` (`webhook-secret`):
//!   put the secret your payment provider issued there;
//! - admin token: `[gateway] admin_token`, or the file `admin_token_file`
//!   (`admin-token`) if it exists; `booking up` creates that one.
//!
//! None is derived from another or from configuration. Gateways of one
//! cluster must read the same session secret, ticket key and webhook secret
//! (copy the files or point the keys at one shared path): a session or
//! waiting-room token from one gateway is then good at another, and every
//! gateway renders the same ticket codes.
//!
//! Must not: log a secret or a whole token. Caveat: session tokens cannot be
//! revoked before they expire (stateless by design: a gateway keeps no state
//! another gateway would need).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::settings::{GatewaySettings, SettingsError};

type HmacSha256 = Hmac<Sha256>;

/// Longest token we try to decode, in bytes; longer ones are refused unread.
const TOKEN_LEN_MAX: usize = 1024;
/// Shortest secret read from a file (a provider's webhook secret), in bytes.
const SECRET_LEN_MIN: usize = 16;
/// Longest secret file we read, in bytes.
const SECRET_FILE_LEN_MAX: u64 = 4096;

/// The gateway's secrets, loaded once at start.
pub struct Keys {
    session_secret: Vec<u8>,
    webhook_secret: Vec<u8>,
    ticket_key: SigningKey,
    admin_token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys{..}")
    }
}

/// What a valid session token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The user name.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// What a valid waiting-room token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueClaims {
    /// The event.
    pub e: String,
    /// The user it was issued to.
    pub u: String,
    /// The position in line (from a block the gateway reserved).
    pub p: u64,
    /// Issue time, ms since the Unix epoch (the gateway's clock; shown, not trusted).
    pub t: u64,
}

impl Keys {
    /// Loads every secret as the module doc describes, creating the random
    /// ones that are missing.
    pub fn load(settings: &GatewaySettings) -> Result<Keys, SettingsError> {
        let session_secret = read_secret(&settings.session_secret_path())?;
        let webhook_secret = read_secret(&settings.webhook_secret_path())?;
        let ticket_seed = load_or_create_hex32(&settings.ticket_key_path())?;
        let admin_token = match &settings.admin_token {
            Some(t) => Some(t.clone()),
            None => read_admin_token(&settings.admin_token_path())?,
        };
        Ok(Keys {
            session_secret,
            webhook_secret,
            ticket_key: SigningKey::from_bytes(&ticket_seed),
            admin_token,
        })
    }

    /// Keys from fixed strings, for tests.
    pub fn for_tests(session_secret: &str, ticket_seed: &str, webhook_secret: &str) -> Keys {
        let seed: [u8; 32] = Sha256::digest(ticket_seed.as_bytes()).into();
        Keys {
            session_secret: session_secret.as_bytes().to_vec(),
            webhook_secret: webhook_secret.as_bytes().to_vec(),
            ticket_key: SigningKey::from_bytes(&seed),
            admin_token: None,
        }
    }

    /// These keys with `token` as the admin token (tests).
    pub fn with_admin_token(mut self, token: &str) -> Keys {
        self.admin_token = Some(token.to_string());
        self
    }

    /// The operators' bearer token, if one is configured.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// A session token for `name`, valid until `exp_s` (Unix seconds).
    pub fn issue_session(&self, name: &str, exp_s: u64) -> String {
        let claims = SessionClaims {
            sub: name.to_string(),
            exp: exp_s,
        };
        self.sign_compact("session.", &serde_json::to_vec(&claims).unwrap_or_default())
    }

    /// The claims of a valid, unexpired session token.
    pub fn verify_session(&self, token: &str, now_s: u64) -> Option<SessionClaims> {
        let payload = self.verify_compact("session.", token)?;
        let claims: SessionClaims = serde_json::from_slice(&payload).ok()?;
        (claims.exp > now_s).then_some(claims)
    }

    /// A waiting-room token binding `user` to `position` in `event_id`'s line.
    pub fn issue_queue_token(
        &self,
        event_id: &str,
        user: &str,
        position: u64,
        issued_ms: u64,
    ) -> String {
        let claims = QueueClaims {
            e: event_id.to_string(),
            u: user.to_string(),
            p: position,
            t: issued_ms,
        };
        self.sign_compact("queue2.", &serde_json::to_vec(&claims).unwrap_or_default())
    }

    /// The claims of a valid waiting-room token.
    pub fn verify_queue_token(&self, token: &str) -> Option<QueueClaims> {
        let payload = self.verify_compact("queue2.", token)?;
        serde_json::from_slice(&payload).ok()
    }

    pub fn webhook_secret(&self) -> &[u8] {
        &self.webhook_secret
    }

    pub fn ticket_key(&self) -> &SigningKey {
        &self.ticket_key
    }

    fn sign_compact(&self, domain: &str, payload: &[u8]) -> String {
        let p = B64.encode(payload);
        let tag = mac_parts(&self.session_secret, &[domain.as_bytes(), p.as_bytes()]);
        format!("{p}.{}", B64.encode(tag))
    }

    fn verify_compact(&self, domain: &str, token: &str) -> Option<Vec<u8>> {
        if token.len() > TOKEN_LEN_MAX {
            return None;
        }
        let (p, tag) = token.split_once('.')?;
        let tag = B64.decode(tag).ok()?;
        let mut m = HmacSha256::new_from_slice(&self.session_secret).ok()?;
        m.update(domain.as_bytes());
        m.update(p.as_bytes());
        // Constant-time comparison inside `verify_slice`.
        m.verify_slice(&tag).ok()?;
        B64.decode(p).ok()
    }
}

/// HMAC-SHA256 over the concatenated parts. HMAC takes a key of any length,
/// so the error branch is unreachable; it yields an all-zero tag, which no
/// verification accepts by accident (verification recomputes with the key).
fn mac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// A secret file's bytes (trimmed), creating a random one if missing.
pub(crate) fn read_secret(path: &Path) -> Result<Vec<u8>, SettingsError> {
    if !path.exists() {
        load_or_create_hex32(path)?;
    }
    let err = |message: String| SettingsError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read_small(path).map_err(err)?;
    let text = bytes.trim_ascii().to_vec();
    if text.len() < SECRET_LEN_MIN {
        return Err(err(format!(
            "a secret needs at least {SECRET_LEN_MIN} bytes"
        )));
    }
    Ok(text)
}

/// The admin token in `path`, if the file exists.
pub fn read_admin_token(path: &Path) -> Result<Option<String>, SettingsError> {
    let err = |message: String| SettingsError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
        Ok(_) => {}
    }
    let bytes = read_small(path).map_err(err)?;
    let token = String::from_utf8(bytes.trim_ascii().to_vec())
        .map_err(|_| err("the admin token is not UTF-8".into()))?;
    if token.len() < cluster_config::limits::ADMIN_TOKEN_LEN_MIN {
        return Err(err(format!(
            "an admin token needs at least {} characters",
            cluster_config::limits::ADMIN_TOKEN_LEN_MIN
        )));
    }
    Ok(Some(token))
}

/// Reads a file of at most [`SECRET_FILE_LEN_MAX`] bytes.
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(SECRET_FILE_LEN_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > SECRET_FILE_LEN_MAX {
        return Err(format!("longer than {SECRET_FILE_LEN_MAX} bytes"));
    }
    Ok(bytes)
}

/// Reads 32 random bytes in hex, or writes fresh ones (mode 0600) if the
/// file does not exist. Two gateways may race to create it (tests and `up`
/// start several at once), so the seed is written and synced in a private
/// temporary file first and then hard-linked into place: the link either
/// appears complete or fails with `AlreadyExists`, and then the loser reads
/// the winner's seed. (Creating the final file directly let a loser read it
/// empty, between the winner's create and its write.)
pub fn load_or_create_hex32(path: &Path) -> Result<[u8; 32], SettingsError> {
    let err = |message: String| SettingsError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_seed(&text).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| err(format!("no randomness: {e}")))?;
            let mut nonce = [0u8; 8];
            getrandom::fill(&mut nonce).map_err(|e| err(format!("no randomness: {e}")))?;
            let tmp = dir.join(format!(
                ".secret.{}.{}.tmp",
                std::process::id(),
                hex::encode(nonce)
            ));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let written = options.open(&tmp).and_then(|mut f| {
                use std::io::Write;
                f.write_all(hex::encode(seed).as_bytes())?;
                f.sync_all()
            });
            let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(seed),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
                    parse_seed(&text).map_err(err)
                }
                Err(e) => Err(err(e.to_string())),
            }
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn parse_seed(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("expected 32 bytes of hex, found {}", b.len()))
}

/// Creates every missing secret file of `settings` (session secret, ticket
/// key, webhook secret); `booking up` calls this once before starting
/// gateways so they all share them.
pub fn ensure_secret_files(settings: &GatewaySettings) -> Result<(), SettingsError> {
    for path in [
        settings.session_secret_path(),
        settings.ticket_key_path(),
        settings.webhook_secret_path(),
    ] {
        load_or_create_hex32(&path)?;
    }
    Ok(())
}

/// Writes a random admin token to `path` (mode 0600) unless the file
/// exists; returns the token when it was created now, so `booking up` can
/// print it once.
pub fn create_admin_token(path: &Path) -> Result<Option<String>, SettingsError> {
    if path.exists() {
        return Ok(None);
    }
    let seed = load_or_create_hex32(path)?;
    Ok(Some(hex::encode(seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_verify_and_expire() {
        // Goal: a session token verifies until expiry and any edit breaks it.
        let keys = Keys::for_tests("s", "t", "w");
        let token = keys.issue_session("alice", 1_000);
        assert_eq!(
            keys.verify_session(&token, 999).map(|c| c.sub),
            Some("alice".into())
        );
        assert!(keys.verify_session(&token, 1_000).is_none());
        let other = Keys::for_tests("s2", "t", "w");
        assert!(other.verify_session(&token, 0).is_none());
        let (p, t) = token.split_once('.').unwrap();
        let forged = format!("{}.{t}", B64.encode(br#"{"sub":"mallory","exp":5000}"#));
        assert!(keys.verify_session(&forged, 0).is_none());
        assert!(keys.verify_session(&format!("{p}.AAAA"), 0).is_none());
        // A queue token is not a session token.
        let q = keys.issue_queue_token("e", "alice", 42, 7);
        assert!(keys.verify_session(&q, 0).is_none());
        assert_eq!(
            keys.verify_queue_token(&q),
            Some(QueueClaims {
                e: "e".into(),
                u: "alice".into(),
                p: 42,
                t: 7
            })
        );
        // Another position is another signature: an edited payload fails.
        let (_, mac) = q.split_once('.').unwrap();
        let edited = format!(
            "{}.{mac}",
            B64.encode(br#"{"e":"e","u":"alice","p":1,"t":7}"#)
        );
        assert!(keys.verify_queue_token(&edited).is_none());
        // A session token is not a queue token.
        assert!(keys.verify_queue_token(&token).is_none());
    }

    #[test]
    fn racing_creators_all_read_one_complete_seed() {
        // Goal: gateways starting together never read a half-written key
        // file and all end up with the same seed (a real race seen in CI).
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sub").join("ticket-key.hex");
            let seeds: Vec<[u8; 32]> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| load_or_create_hex32(&path)))
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap()
                            .unwrap_or_else(|e| panic!("round {round}: {e}"))
                    })
                    .collect()
            });
            assert!(seeds.iter().all(|s| *s == seeds[0]), "round {round}");
            let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
            assert_eq!(leftovers, 1, "round {round}: temporary files left behind");
        }
    }

    #[test]
    fn ticket_key_file_is_created_once() {
        // Goal: the key file is created on first use and read back after.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ticket-key.hex");
        let a = load_or_create_hex32(&path).unwrap();
        let b = load_or_create_hex32(&path).unwrap();
        assert_eq!(a, b);
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn secrets_are_separate_random_files_with_mode_0600() {
        // Goal: a first start creates three different secrets, private to the
        // owner, and a second start reads the same ones back.
        let dir = tempfile::tempdir().unwrap();
        let settings = GatewaySettings {
            data_dir: dir.path().join("gw"),
            ..GatewaySettings::default()
        };
        let a = Keys::load(&settings).unwrap();
        let b = Keys::load(&settings).unwrap();
        assert_eq!(a.session_secret, b.session_secret);
        assert_eq!(a.webhook_secret, b.webhook_secret);
        assert_eq!(a.ticket_key.to_bytes(), b.ticket_key.to_bytes());
        assert_ne!(a.session_secret, a.webhook_secret);
        assert_ne!(
            a.session_secret,
            hex::encode(a.ticket_key.to_bytes()).into_bytes()
        );
        assert!(a.admin_token().is_none());
        #[cfg(unix)]
        for name in ["session-secret", "webhook-secret", "ticket-key.hex"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(settings.data_dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        // The admin token file is read when present, created only on request.
        let token = create_admin_token(&settings.admin_token_path())
            .unwrap()
            .unwrap();
        assert!(create_admin_token(&settings.admin_token_path())
            .unwrap()
            .is_none());
        assert_eq!(
            Keys::load(&settings).unwrap().admin_token(),
            Some(token.as_str())
        );
    }

    #[test]
    fn a_provider_webhook_secret_is_used_as_written() {
        // Goal: `[payments] webhook_secret_file` may hold the provider's secret (any text).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whsec");
        std::fs::write(&path, "whsec_provider_issued_secret_123\n").unwrap();
        let settings = GatewaySettings {
            data_dir: dir.path().join("gw"),
            webhook_secret_file: Some(path),
            ..GatewaySettings::default()
        };
        let keys = Keys::load(&settings).unwrap();
        assert_eq!(keys.webhook_secret(), b"whsec_provider_issued_secret_123");
    }
}
