//! Payments: the [`PaymentProvider`] trait, a built-in simulated provider,
//! and Stripe-style webhook signatures.
//!
//! Owns: what a charge can come to ([`ChargeResult`], [`PaymentError`]), the
//! simulated provider's test tokens and its charge ledger, and
//! `Booking-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! Must not: touch the cluster; the checkout flow in `api::checkout::checkout`
//! sequences begin (the provider names the charge) → BeginCharge → charge
//! → ConfirmCharge / FailPayment.
//!
//! Simulated test tokens (`payment_method`):
//! - `tok_ok`: succeeds.
//! - `tok_declined`: a definite failure.
//! - `tok_flaky`: the first two attempts under one idempotency key fail
//!   transiently, the third succeeds; the ledger charges once.
//! - `tok_slow_<ms>`: succeeds after `<ms>` (capped at [`SLOW_DELAY_MS_MAX`]).
//! - `tok_pending`: answers "pending"; the outcome arrives by webhook.
//!
//! Caveat: the simulated ledger lives in one gateway's memory. A real
//! provider keeps it on its side, keyed by the idempotency key, which is why
//! the key is derived from the hold: any gateway retrying charges once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::BoxFuture;

/// Longest delay `tok_slow_<ms>` may ask for, in ms.
pub const SLOW_DELAY_MS_MAX: u64 = 60_000;
/// Charges the simulated ledger remembers; the oldest are forgotten first.
pub const LEDGER_ENTRIES_MAX: usize = 100_000;
/// Longest payment method string, in bytes.
pub const PAYMENT_METHOD_LEN_MAX: usize = 64;

/// One charge to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The same key for every retry of one payment; the provider charges once per key.
    pub idempotency_key: String,
    pub amount_cents: u64,
    pub payment_method: String,
    /// The hold being paid, so webhooks can name it.
    pub hold_id: u64,
}

/// What a charge came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeResult {
    Succeeded {
        charge_id: String,
    },
    /// A definite failure: no money moved.
    Declined {
        reason: String,
    },
    /// The provider will say later, by webhook.
    Pending {
        charge_id: String,
    },
}

/// A provider call that did not come to a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Try again with the same idempotency key.
    #[error("transient payment failure: {0}")]
    Transient(String),
    /// The payment method is not one this provider takes (nothing was tried).
    #[error("invalid payment method: {0}")]
    InvalidMethod(String),
    /// No provider is configured (`[payments] provider = "none"`).
    #[error("no payment provider is configured")]
    Unavailable,
}

/// A payment provider. Every call with the same idempotency key must come to
/// the same charge.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Checks the method's shape before anything is reserved for it.
    fn validate_method(&self, payment_method: &str) -> Result<(), PaymentError>;
    /// Names the charge this request will be (a payment intent: no money
    /// moves). The same idempotency key always names the same charge. The
    /// gateway records it in replicated state (`BeginCharge`) before any
    /// money moves, so only this charge can confirm the hold.
    fn begin(&self, request: &ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>>;
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<ChargeResult, PaymentError>>;
    /// Gives a charge's money back (idempotent per `charge_id`).
    fn refund(&self, charge_id: String) -> BoxFuture<'_, Result<(), PaymentError>>;
}

/// The provider `[payments] provider` names.
pub fn provider_for(kind: crate::settings::PaymentProviderKind) -> Arc<dyn PaymentProvider> {
    match kind {
        crate::settings::PaymentProviderKind::Simulated => Arc::new(SimulatedProvider::new()),
        crate::settings::PaymentProviderKind::None => Arc::new(NoProvider),
    }
}

/// No payment provider configured: every method is refused before anything
/// is reserved, so checkout answers 503 `payments_unavailable`.
pub struct NoProvider;

impl PaymentProvider for NoProvider {
    fn validate_method(&self, _payment_method: &str) -> Result<(), PaymentError> {
        Err(PaymentError::Unavailable)
    }
    fn begin(&self, _request: &ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(async { Err(PaymentError::Unavailable) })
    }
    fn charge(&self, _request: ChargeRequest) -> BoxFuture<'_, Result<ChargeResult, PaymentError>> {
        Box::pin(async { Err(PaymentError::Unavailable) })
    }
    fn refund(&self, _charge_id: String) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(async { Err(PaymentError::Unavailable) })
    }
}

/// One ledger line of the simulated provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChargeRecord {
    pub idempotency_key: String,
    pub charge_id: String,
    pub amount_cents: u64,
    /// Attempts seen under this key, failed ones included.
    pub attempts: u32,
    /// Times money was actually taken under this key (0 or 1).
    pub charges: u32,
    pub refunded: bool,
    pub pending: bool,
}

/// The built-in simulated provider.
#[derive(Default)]
pub struct SimulatedProvider {
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    by_key: HashMap<String, ChargeRecord>,
    /// Insertion order, to forget the oldest when full.
    order: VecDeque<String>,
}

impl SimulatedProvider {
    pub fn new() -> SimulatedProvider {
        SimulatedProvider::default()
    }

    /// The ledger. Nothing panics while holding it, but a poisoned lock
    /// must not turn every later checkout into a 500 either.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ledger line of a key, if any.
    pub fn record(&self, idempotency_key: &str) -> Option<ChargeRecord> {
        self.ledger().by_key.get(idempotency_key).cloned()
    }

    /// Every ledger line (tests and the debug view).
    pub fn records(&self) -> Vec<ChargeRecord> {
        let ledger = self.ledger();
        ledger
            .order
            .iter()
            .filter_map(|k| ledger.by_key.get(k).cloned())
            .collect()
    }

    /// Deterministic charge id of a key.
    fn charge_id(key: &str) -> String {
        format!("ch_{}", &hex::encode(Sha256::digest(key.as_bytes()))[..24])
    }

    /// Records an attempt and returns the line after it.
    fn attempt(&self, request: &ChargeRequest) -> ChargeRecord {
        let mut ledger = self.ledger();
        let key = &request.idempotency_key;
        if !ledger.by_key.contains_key(key) {
            if ledger.order.len() >= LEDGER_ENTRIES_MAX {
                if let Some(old) = ledger.order.pop_front() {
                    ledger.by_key.remove(&old);
                }
            }
            ledger.order.push_back(key.clone());
        }
        let line = ledger
            .by_key
            .entry(key.clone())
            .or_insert_with(|| ChargeRecord {
                idempotency_key: key.clone(),
                charge_id: Self::charge_id(key),
                amount_cents: request.amount_cents,
                attempts: 0,
                charges: 0,
                refunded: false,
                pending: false,
            });
        line.attempts += 1;
        line.clone()
    }

    /// Takes the money once per key (the line was recorded by `attempt`; if
    /// it was forgotten meanwhile, the charge id is the same anyway).
    fn settle(&self, key: &str, pending: bool) -> String {
        let mut ledger = self.ledger();
        match ledger.by_key.get_mut(key) {
            Some(line) => {
                if line.charges == 0 {
                    line.charges = 1;
                    line.pending = pending;
                }
                line.charge_id.clone()
            }
            None => Self::charge_id(key),
        }
    }

    /// Settles a pending charge (what the provider does before sending its webhook).
    pub fn finish_pending(&self, charge_id: &str, succeeded: bool) {
        let mut ledger = self.ledger();
        if let Some(line) = ledger
            .by_key
            .values_mut()
            .find(|l| l.charge_id == charge_id)
        {
            line.pending = false;
            if !succeeded {
                line.charges = 0;
            }
        }
    }
}

/// Parses `tok_slow_<ms>`.
fn slow_delay_ms(method: &str) -> Option<u64> {
    method.strip_prefix("tok_slow_")?.parse::<u64>().ok()
}

impl PaymentProvider for SimulatedProvider {
    fn validate_method(&self, method: &str) -> Result<(), PaymentError> {
        let known = matches!(
            method,
            "tok_ok" | "tok_declined" | "tok_flaky" | "tok_pending"
        ) || slow_delay_ms(method).is_some_and(|ms| ms <= SLOW_DELAY_MS_MAX);
        if known {
            Ok(())
        } else {
            Err(PaymentError::InvalidMethod(
                "use tok_ok, tok_declined, tok_flaky, tok_pending or tok_slow_<ms> (ms <= 60000)"
                    .into(),
            ))
        }
    }

    fn begin(&self, request: &ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>> {
        let charge_id = Self::charge_id(&request.idempotency_key);
        Box::pin(async move { Ok(charge_id) })
    }

    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<ChargeResult, PaymentError>> {
        Box::pin(async move {
            self.validate_method(&request.payment_method)?;
            let line = self.attempt(&request);
            // A key that already took money answers with the same charge.
            if line.charges > 0 {
                return Ok(if line.pending {
                    ChargeResult::Pending {
                        charge_id: line.charge_id,
                    }
                } else {
                    ChargeResult::Succeeded {
                        charge_id: line.charge_id,
                    }
                });
            }
            match request.payment_method.as_str() {
                "tok_ok" => Ok(ChargeResult::Succeeded {
                    charge_id: self.settle(&request.idempotency_key, false),
                }),
                "tok_declined" => Ok(ChargeResult::Declined {
                    reason: "card declined".into(),
                }),
                "tok_flaky" if line.attempts <= 2 => Err(PaymentError::Transient(format!(
                    "provider hiccup (attempt {})",
                    line.attempts
                ))),
                "tok_flaky" => Ok(ChargeResult::Succeeded {
                    charge_id: self.settle(&request.idempotency_key, false),
                }),
                "tok_pending" => Ok(ChargeResult::Pending {
                    charge_id: self.settle(&request.idempotency_key, true),
                }),
                method => {
                    let ms = slow_delay_ms(method).unwrap_or(0).min(SLOW_DELAY_MS_MAX);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(ChargeResult::Succeeded {
                        charge_id: self.settle(&request.idempotency_key, false),
                    })
                }
            }
        })
    }

    fn refund(&self, charge_id: String) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(async move {
            let mut ledger = self.ledger();
            if let Some(line) = ledger
                .by_key
                .values_mut()
                .find(|l| l.charge_id == charge_id)
            {
                line.refunded = true;
            }
            Ok(())
        })
    }
}

/// The webhook body the provider sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEvent {
    /// Provider's event id; deduplicated in replicated state.
    pub id: String,
    /// `payment.succeeded` or `payment.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub data: WebhookData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookData {
    pub hold_id: u64,
    pub charge_id: String,
    /// What the charge took, in cents; must be what the hold's payment began with.
    pub amount_cents: u64,
}

/// Why a webhook signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing or malformed Booking-Signature header")]
    Malformed,
    #[error("timestamp outside the tolerance window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

/// The `Booking-Signature` header value for `body` at time `t_s`.
pub fn sign_webhook(secret: &[u8], t_s: u64, body: &[u8]) -> String {
    let tag = HmacSha256::new_from_slice(secret)
        .map(|mut m| {
            m.update(t_s.to_string().as_bytes());
            m.update(b".");
            m.update(body);
            hex::encode(m.finalize().into_bytes())
        })
        .unwrap_or_default();
    format!("t={t_s},v1={tag}")
}

/// Checks a `Booking-Signature` header: the timestamp within `tolerance_s`
/// of `now_s`, and any one `v1` matching (several allow key rotation).
pub fn verify_webhook(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), WebhookError> {
    let mut t: Option<u64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',').take(8) {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse().map_err(|_| WebhookError::Malformed)?),
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| WebhookError::Malformed)?)
            }
            _ => {}
        }
    }
    let t = t.ok_or(WebhookError::Malformed)?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed);
    }
    if now_s.abs_diff(t) > tolerance_s {
        return Err(WebhookError::Stale);
    }
    for sig in signatures {
        let Ok(mut m) = HmacSha256::new_from_slice(secret) else {
            return Err(WebhookError::Mismatch);
        };
        m.update(t.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        if m.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(WebhookError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_round_trip_and_fail_when_forged() {
        // Goal: a signed webhook verifies; a changed body, secret or old timestamp does not.
        let header = sign_webhook(b"s", 1_000, b"{}");
        assert_eq!(verify_webhook(b"s", &header, b"{}", 1_100, 300), Ok(()));
        assert_eq!(
            verify_webhook(b"s", &header, b"{ }", 1_100, 300),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"x", &header, b"{}", 1_100, 300),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"s", &header, b"{}", 2_000, 300),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_webhook(b"s", "garbage", b"{}", 1_000, 300),
            Err(WebhookError::Malformed)
        );
    }

    #[tokio::test]
    async fn flaky_charges_once() {
        // Goal: tok_flaky fails twice then succeeds, and the key is charged once.
        let p = SimulatedProvider::new();
        let req = ChargeRequest {
            idempotency_key: "k".into(),
            amount_cents: 100,
            payment_method: "tok_flaky".into(),
            hold_id: 1,
        };
        assert!(p.charge(req.clone()).await.is_err());
        assert!(p.charge(req.clone()).await.is_err());
        assert!(matches!(
            p.charge(req.clone()).await,
            Ok(ChargeResult::Succeeded { .. })
        ));
        assert!(matches!(
            p.charge(req).await,
            Ok(ChargeResult::Succeeded { .. })
        ));
        let line = p.record("k").unwrap();
        assert_eq!((line.attempts, line.charges), (4, 1));
    }
}
