//! Goal: in `[auth] mode = "jwt"` the gateway accepts tokens from the
//! configured issuer (EdDSA, ES256, RS256, keys from a JWKS file, `sub` as
//! the user, roles from `scope`) and refuses expired, not-yet-valid,
//! wrong-audience, wrong-issuer, `alg: none`, HS256 and tampered tokens with
//! 401, changing nothing. Ed25519 and P-256 keys are drawn at random in the
//! test; the RSA key is a fixed 2048-bit test key (`tests/data`), since
//! generating one needs an RNG of another `rand_core` generation.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use http_gateway::fake::FakeCluster;
use http_gateway::jwt::{JwtSettings, JwtVerifier};
use http_gateway::settings::{AuthMode, AuthSettings, GatewaySettings};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://id.example.test/";
const AUDIENCE: &str = "booking";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A fresh Ed25519 key (PKCS#8 v1 DER around a random seed).
fn ed25519_key() -> EncodingKey {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&random32());
    EncodingKey::from_ed_der(&der)
}

/// A fresh P-256 key (PKCS#8 DER around a random scalar; a scalar out of
/// range is drawn again by the caller's retry, vanishingly rare).
fn p256_key() -> EncodingKey {
    let mut der =
        hex::decode("3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420")
            .unwrap();
    der.extend_from_slice(&random32());
    EncodingKey::from_ec_der(&der)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_der(include_bytes!("data/jwt-test-rsa-pkcs1.der"))
}

/// The signing keys of the test issuer, by kid.
struct Issuer {
    keys: Vec<(&'static str, Algorithm, EncodingKey)>,
}

impl Issuer {
    fn new() -> Issuer {
        Issuer {
            keys: vec![
                ("ed", Algorithm::EdDSA, ed25519_key()),
                ("ec", Algorithm::ES256, p256_key()),
                ("rsa", Algorithm::RS256, rsa_key()),
            ],
        }
    }

    fn jwks(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|(kid, alg, key)| {
                let mut jwk = Jwk::from_encoding_key(key, *alg).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                jwk.common.key_algorithm = Some(match alg {
                    Algorithm::EdDSA => KeyAlgorithm::EdDSA,
                    Algorithm::ES256 => KeyAlgorithm::ES256,
                    _ => KeyAlgorithm::RS256,
                });
                jwk
            })
            .collect();
        serde_json::to_string_pretty(&JwkSet { keys }).unwrap()
    }

    fn mint(&self, kid: &str, claims: &Value) -> String {
        let (_, alg, key) = self.keys.iter().find(|k| k.0 == kid).unwrap();
        let mut header = Header::new(*alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now_s() + 600, "iat": now_s() })
}

fn jwt_settings(keys_file: &std::path::Path) -> GatewaySettings {
    GatewaySettings {
        auth: AuthSettings {
            mode: AuthMode::Jwt,
            jwt_issuer: Some(ISSUER.into()),
            jwt_audience: Some(AUDIENCE.into()),
            jwt_keys_file: Some(keys_file.to_path_buf()),
            ..AuthSettings::default()
        },
        ..settings()
    }
}

/// A token whose payload was edited after signing.
fn tampered(token: &str, from: &str, to: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(B64.decode(parts[1]).unwrap()).unwrap();
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(payload.replace(from, to)),
        parts[2]
    )
}

fn unsigned(alg: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(json!({ "alg": alg, "typ": "JWT" }).to_string()),
        B64.encode(claims.to_string())
    )
}

#[tokio::test]
async fn tokens_of_the_issuer_are_accepted_and_every_forgery_refused() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new();
    let keys_file = dir.path().join("jwks.json");
    std::fs::write(&keys_file, issuer.jwks()).unwrap();
    let gw = start_on(Arc::new(FakeCluster::new()), jwt_settings(&keys_file)).await;
    gw.open_event("gig").await;

    // Every algorithm, and a token just past `exp` but inside the 60 s leeway.
    for (i, kid) in ["ed", "ec", "rsa"].into_iter().enumerate() {
        let token = issuer.mint(kid, &claims(&format!("user-{kid}")));
        let seat = format!("A-1-{}", i + 1);
        let r = gw.hold(&token, "gig", json!({ "seats": [seat] })).await;
        assert_eq!(r.status, 201, "{kid}: {}", r.text);
    }
    let mut late = claims("late");
    late["exp"] = json!(now_s() - 30);
    let r = gw
        .hold(
            &issuer.mint("ed", &late),
            "gig",
            json!({ "seats": ["A-1-9"] }),
        )
        .await;
    assert_eq!(r.status, 201, "within the leeway: {}", r.text);
    let before = gw.seat_map("gig").await;

    let valid = issuer.mint("ec", &claims("mallory"));
    let mut expired = claims("mallory");
    expired["exp"] = json!(now_s() - 120);
    let mut not_yet = claims("mallory");
    not_yet["nbf"] = json!(now_s() + 600);
    let mut wrong_aud = claims("mallory");
    wrong_aud["aud"] = json!("another-service");
    let mut wrong_iss = claims("mallory");
    wrong_iss["iss"] = json!("https://evil.example/");
    let mut no_exp = claims("mallory");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_sub = claims("mallory");
    no_sub.as_object_mut().unwrap().remove("sub");
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ed".into());
        jsonwebtoken::encode(
            &header,
            &claims("mallory"),
            &EncodingKey::from_secret(b"guess").unwrap(),
        )
        .unwrap()
    };
    let stranger = Issuer::new();
    let cases: Vec<(&str, String)> = vec![
        ("expired", issuer.mint("ed", &expired)),
        ("not yet valid", issuer.mint("ed", &not_yet)),
        ("wrong audience", issuer.mint("ed", &wrong_aud)),
        ("wrong issuer", issuer.mint("rsa", &wrong_iss)),
        ("no exp", issuer.mint("ed", &no_exp)),
        ("no sub", issuer.mint("ed", &no_sub)),
        ("sub with a space", issuer.mint("ed", &claims("bob smith"))),
        ("alg none", unsigned("none", &claims("mallory"))),
        ("alg None", unsigned("None", &claims("mallory"))),
        ("HS256 with a guessed secret", hs256),
        ("tampered payload", tampered(&valid, "mallory", "user-ed")),
        (
            "signed by another issuer's key",
            stranger.mint("ed", &claims("mallory")),
        ),
        ("a key id the issuer does not have", {
            let t = stranger.mint("ed", &claims("mallory"));
            let mut parts: Vec<String> = t.split('.').map(String::from).collect();
            parts[0] = B64.encode(json!({ "alg": "EdDSA", "kid": "other" }).to_string());
            parts.join(".")
        }),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in cases {
        let r = gw.hold(&token, "gig", json!({ "seats": ["A-2-1"] })).await;
        assert_problem(&r, 401, "unauthorized");
        assert!(!r.text.contains("mallory"), "{what}: {}", r.text);
    }
    assert_eq!(
        gw.seat_map("gig").await,
        before,
        "a refused token changed seats"
    );

    // Name-only sessions do not exist in jwt mode.
    assert_problem(
        &gw.post("/v1/sessions", None, json!({ "name": "user-ed" }))
            .await,
        404,
        "sessions_disabled",
    );
}

#[tokio::test]
async fn scopes_grant_the_operator_and_door_roles() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new();
    let keys_file = dir.path().join("jwks.json");
    std::fs::write(&keys_file, issuer.jwks()).unwrap();
    let gw = start_on(Arc::new(FakeCluster::new()), jwt_settings(&keys_file)).await;
    let with_scope = |sub: &str, scope: &str| {
        let mut c = claims(sub);
        c["scope"] = json!(scope);
        issuer.mint("ed", &c)
    };
    let plain = issuer.mint("ed", &claims("fan"));
    let admin = with_scope("ops", "openid booking:admin");
    let door = with_scope("door", "booking:scan");
    assert_problem(
        &gw.post("/v1/events", Some(&plain), event_spec("e1")).await,
        403,
        "admin_only",
    );
    assert_problem(
        &gw.post("/v1/events", Some(&door), event_spec("e1")).await,
        403,
        "admin_only",
    );
    let r = gw.post("/v1/events", Some(&admin), event_spec("e1")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Check-in needs booking:scan (a garbage code is then 422, not 403).
    let check_in = "/v1/events/e1/check-in";
    let body = json!({ "code": "garbage" });
    assert_problem(
        &gw.post(check_in, Some(&plain), body.clone()).await,
        403,
        "scan_only",
    );
    assert_problem(
        &gw.post(check_in, Some(&door), body.clone()).await,
        422,
        "invalid_code",
    );
}

#[tokio::test]
async fn the_user_limit_follows_the_subject_whatever_the_bearer_casing() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new();
    let keys_file = dir.path().join("jwks.json");
    std::fs::write(&keys_file, issuer.jwks()).unwrap();
    let settings = GatewaySettings {
        rate_per_user_per_s: 1,
        rate_per_user_burst: 3,
        ..jwt_settings(&keys_file)
    };
    let gw = start_on(Arc::new(FakeCluster::new()), settings).await;
    let token = issuer.mint("rsa", &claims("greedy"));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = gw
            .send(
                gw.http
                    .get(gw.url("/v1/holds/1"))
                    .header("authorization", format!("{scheme} {token}")),
            )
            .await;
        assert_problem(&r, 404, "not_found");
    }
    let r = gw
        .send(
            gw.http
                .get(gw.url("/v1/holds/1"))
                .header("authorization", format!("bEaReR {token}")),
        )
        .await;
    assert_problem(&r, 429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // Another user is not limited by greedy's bucket.
    let other = issuer.mint("ed", &claims("patient"));
    assert_problem(&gw.get("/v1/holds/1", Some(&other)).await, 404, "not_found");
}

#[test]
fn a_changed_key_file_is_read_again_and_a_missing_one_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("jwks.json");
    let settings = JwtSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        keys_file: keys_file.clone(),
        leeway_s: 60,
    };
    let e = JwtVerifier::load(settings.clone())
        .err()
        .expect("no file, no start");
    assert!(e.to_string().contains("[auth] jwt_keys_file"), "{e}");
    std::fs::write(&keys_file, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
    let e = JwtVerifier::load(settings.clone())
        .err()
        .expect("an HMAC key is not usable");
    assert!(e.to_string().contains("no usable key"), "{e}");

    let old = Issuer::new();
    std::fs::write(&keys_file, old.jwks()).unwrap();
    let verifier = JwtVerifier::load(settings).unwrap();
    let old_token = old.mint("ed", &claims("alice"));
    assert_eq!(verifier.verify(&old_token).unwrap().user, "alice");
    // Rotation: the issuer publishes only a new Ed25519 key.
    let new = Issuer {
        keys: vec![("ed2", Algorithm::EdDSA, ed25519_key())],
    };
    std::fs::write(&keys_file, new.jwks()).unwrap();
    verifier.reload_if_changed();
    assert!(verifier.verify(&old_token).is_err());
    assert_eq!(
        verifier
            .verify(&new.mint("ed2", &claims("bob")))
            .unwrap()
            .user,
        "bob"
    );
    // A broken file keeps the last good keys.
    std::fs::write(&keys_file, "{ not json").unwrap();
    verifier.reload_if_changed();
    assert!(verifier.verify(&new.mint("ed2", &claims("bob"))).is_ok());
}

#[test]
fn the_readme_mint_script_makes_tokens_the_gateway_accepts() {
    // Goal: the operator's recipe in the README (scripts/mint-dev-jwt.sh,
    // openssl only) yields a JWKS and a token this gateway verifies.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mint-dev-jwt.sh");
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output();
    if !openssl.is_ok_and(|o| o.status.success()) {
        testkit::skip_or_fail(
            "the_readme_mint_script_makes_tokens_the_gateway_accepts",
            "openssl is not installed (the script needs it)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir.path())
        .args(["door-7", "booking:scan", ISSUER, AUDIENCE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let verifier = JwtVerifier::load(JwtSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        keys_file: dir.path().join("jwks.json"),
        leeway_s: 60,
    })
    .unwrap();
    let id = verifier.verify(&token).unwrap();
    assert_eq!(
        (id.user.as_str(), id.scan, id.admin),
        ("door-7", true, false)
    );
}
