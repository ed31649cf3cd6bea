//! Secrets and the signed tokens made with them: session tokens, waiting-room
//! tokens, the ticket signing key, and the webhook secret.
//!
//! Owns: loading or deriving every secret ([`Keys::load`]) and the compact
//! signed formats:
//! - session token: `b64url(json{sub,exp}) "." b64url(HMAC-SHA256(secret, "session." payload))`
//! - waiting-room token: `b64url(json{e,u}) "." b64url(HMAC-SHA256(secret, "queue." payload))`
//!
//! Where secrets come from (all gateways of a cluster must agree):
//! - token secret: `token_secret_file` (any bytes; hashed) or, by default,
//!   `SHA-256("booking-gateway-token-v1" | cluster_name | admin_token)`, so
//!   gateways sharing a `cluster.toml` share it without another file.
//! - ticket key: `ticket_key_seed` (hashed into an Ed25519 seed) or the hex
//!   seed in `ticket_key_file` (default `<data_dir>/ticket-key.hex`), created
//!   with a random seed and mode 0600 when absent.
//! - webhook secret: `webhook_secret`, or derived from the token secret.
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

/// The gateway's secrets, loaded once at start.
pub struct Keys {
    token_secret: [u8; 32],
    webhook_secret: Vec<u8>,
    ticket_key: SigningKey,
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

#[derive(Serialize, Deserialize)]
struct QueueClaims {
    e: String,
    u: String,
}

impl Keys {
    /// Loads or derives every secret as the module doc describes.
    pub fn load(settings: &GatewaySettings) -> Result<Keys, SettingsError> {
        let token_secret: [u8; 32] = match &settings.token_secret_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| SettingsError::KeyFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                if bytes.len() < 16 {
                    return Err(SettingsError::KeyFile {
                        path: path.clone(),
                        message: "a token secret needs at least 16 bytes".into(),
                    });
                }
                Sha256::new()
                    .chain_update(b"booking-gateway-token-file-v1")
                    .chain_update(&bytes)
                    .finalize()
                    .into()
            }
            None => Sha256::new()
                .chain_update(b"booking-gateway-token-v1\0")
                .chain_update(settings.cluster_name.as_bytes())
                .chain_update(b"\0")
                .chain_update(settings.admin_token.as_bytes())
                .finalize()
                .into(),
        };
        let webhook_secret = match &settings.webhook_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => hex::encode(mac(&token_secret, b"webhook-secret-v1")).into_bytes(),
        };
        let ticket_seed: [u8; 32] = match (&settings.ticket_key_seed, &settings.ticket_key_file) {
            (Some(seed), _) => Sha256::new()
                .chain_update(b"booking-ticket-key-v1\0")
                .chain_update(seed)
                .finalize()
                .into(),
            (None, Some(path)) => load_or_create_seed(path)?,
            (None, None) => load_or_create_seed(&settings.data_dir.join("ticket-key.hex"))?,
        };
        Ok(Keys {
            token_secret,
            webhook_secret,
            ticket_key: SigningKey::from_bytes(&ticket_seed),
        })
    }

    /// Keys from fixed strings, for tests.
    pub fn for_tests(token_secret: &str, ticket_seed: &str, webhook_secret: &str) -> Keys {
        let token_secret: [u8; 32] = Sha256::digest(token_secret.as_bytes()).into();
        let seed: [u8; 32] = Sha256::digest(ticket_seed.as_bytes()).into();
        Keys {
            token_secret,
            webhook_secret: webhook_secret.as_bytes().to_vec(),
            ticket_key: SigningKey::from_bytes(&seed),
        }
    }

    /// A session token for `name`, valid until `exp_s` (Unix seconds).
    pub fn issue_session(&self, name: &str, exp_s: u64) -> String {
        let claims = SessionClaims {
            sub: name.to_string(),
            exp: exp_s,
        };
        self.sign_compact(
            "session.",
            &serde_json::to_vec(&claims).expect("claims serialise"),
        )
    }

    /// The claims of a valid, unexpired session token.
    pub fn verify_session(&self, token: &str, now_s: u64) -> Option<SessionClaims> {
        let payload = self.verify_compact("session.", token)?;
        let claims: SessionClaims = serde_json::from_slice(&payload).ok()?;
        (claims.exp > now_s).then_some(claims)
    }

    /// A waiting-room token binding `user` to `event_id`.
    pub fn issue_queue_token(&self, event_id: &str, user: &str) -> String {
        let claims = QueueClaims {
            e: event_id.to_string(),
            u: user.to_string(),
        };
        self.sign_compact(
            "queue.",
            &serde_json::to_vec(&claims).expect("claims serialise"),
        )
    }

    /// The `(event_id, user)` of a valid waiting-room token.
    pub fn verify_queue_token(&self, token: &str) -> Option<(String, String)> {
        let payload = self.verify_compact("queue.", token)?;
        let claims: QueueClaims = serde_json::from_slice(&payload).ok()?;
        Some((claims.e, claims.u))
    }

    /// HMAC-SHA256 with the token secret, for derivations (idempotency ids).
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        mac(&self.token_secret, label)
    }

    pub fn webhook_secret(&self) -> &[u8] {
        &self.webhook_secret
    }

    pub fn ticket_key(&self) -> &SigningKey {
        &self.ticket_key
    }

    fn sign_compact(&self, domain: &str, payload: &[u8]) -> String {
        let p = B64.encode(payload);
        let tag = mac_parts(&self.token_secret, &[domain.as_bytes(), p.as_bytes()]);
        format!("{p}.{}", B64.encode(tag))
    }

    fn verify_compact(&self, domain: &str, token: &str) -> Option<Vec<u8>> {
        if token.len() > TOKEN_LEN_MAX {
            return None;
        }
        let (p, tag) = token.split_once('.')?;
        let tag = B64.decode(tag).ok()?;
        let mut m =
            HmacSha256::new_from_slice(&self.token_secret).expect("HMAC takes any key length");
        m.update(domain.as_bytes());
        m.update(p.as_bytes());
        // Constant-time comparison inside `verify_slice`.
        m.verify_slice(&tag).ok()?;
        B64.decode(p).ok()
    }
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    mac_parts(key, &[data])
}

fn mac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Reads a 32-byte hex seed, or writes a fresh random one (mode 0600) if the
/// file does not exist. Two gateways may race to create it (tests and `up`
/// start several at once), so the seed is written and synced in a private
/// temporary file first and then hard-linked into place: the link either
/// appears complete or fails with `AlreadyExists`, and then the loser reads
/// the winner's seed. (Creating the final file directly let a loser read it
/// empty, between the winner's create and its write.)
fn load_or_create_seed(path: &Path) -> Result<[u8; 32], SettingsError> {
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
                ".ticket-key.{}.{}.tmp",
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

/// Creates the ticket key file if it does not exist; `booking up` calls this
/// once before starting gateways so they all share one key.
pub fn ensure_ticket_key_file(path: &Path) -> Result<(), SettingsError> {
    load_or_create_seed(path).map(|_| ())
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
        let q = keys.issue_queue_token("e", "alice");
        assert!(keys.verify_session(&q, 0).is_none());
        assert_eq!(
            keys.verify_queue_token(&q),
            Some(("e".into(), "alice".into()))
        );
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
                    .map(|_| s.spawn(|| load_or_create_seed(&path)))
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
        let a = load_or_create_seed(&path).unwrap();
        let b = load_or_create_seed(&path).unwrap();
        assert_eq!(a, b);
    }
}
