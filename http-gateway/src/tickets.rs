//! E-tickets: the Ed25519-signed compact code, its offline verification, and
//! its QR rendering.
//!
//! Code format: `b64url(payload) "." b64url(signature)`, where `payload` is
//! the JSON `{"v":1,"t":ticket_id,"e":event_id,"s":seat,"h":holder,"i":issued_at_ms}`
//! and the signature is Ed25519 over the payload bytes. Anyone with the
//! public key (`GET /v1/tickets/public-key`) can check a code offline;
//! revocation (a cancelled booking) and check-in need the online check.
//!
//! Owns: encoding, signing, verifying and QR-rendering codes. Must not: look
//! at the cluster. Caveat: Ed25519 signatures are deterministic, so every
//! gateway that shares the key renders the same code for the same ticket;
//! a ticket's code never changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use state_machine::TicketView;

/// Longest code accepted for verification, in bytes.
pub const CODE_LEN_MAX: usize = 2048;

/// What a ticket code carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPayload {
    /// Format version.
    pub v: u8,
    /// Ticket id.
    pub t: u64,
    /// Event id.
    pub e: String,
    /// Seat (`A-12-7`, or `GA#3`).
    pub s: String,
    /// Holder (user name).
    pub h: String,
    /// Issue time, ms since the Unix epoch (log time).
    pub i: u64,
}

impl TicketPayload {
    pub fn of(ticket: &TicketView) -> TicketPayload {
        TicketPayload {
            v: 1,
            t: ticket.ticket_id,
            e: ticket.event_id.clone(),
            s: ticket.seat.clone(),
            h: ticket.holder.clone(),
            i: ticket.issued_at_ms,
        }
    }
}

/// Why a code failed the offline check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not a ticket code")]
    Malformed,
    #[error("signature does not verify")]
    BadSignature,
}

impl CodeError {
    pub fn code(&self) -> &'static str {
        match self {
            CodeError::Malformed => "malformed_code",
            CodeError::BadSignature => "bad_signature",
        }
    }
}

/// Signs the ticket's payload into its code.
pub fn sign_code(key: &SigningKey, ticket: &TicketView) -> String {
    let payload = serde_json::to_vec(&TicketPayload::of(ticket)).expect("payload serialises");
    let signature = key.sign(&payload);
    format!(
        "{}.{}",
        B64.encode(&payload),
        B64.encode(signature.to_bytes())
    )
}

/// Checks a code's signature and returns its payload.
pub fn verify_code(key: &VerifyingKey, code: &str) -> Result<TicketPayload, CodeError> {
    if code.len() > CODE_LEN_MAX {
        return Err(CodeError::Malformed);
    }
    let (p, s) = code.trim().split_once('.').ok_or(CodeError::Malformed)?;
    let payload = B64.decode(p).map_err(|_| CodeError::Malformed)?;
    let sig_bytes: [u8; 64] = B64
        .decode(s)
        .map_err(|_| CodeError::Malformed)?
        .try_into()
        .map_err(|_| CodeError::Malformed)?;
    let signature = Signature::from_bytes(&sig_bytes);
    key.verify(&payload, &signature)
        .map_err(|_| CodeError::BadSignature)?;
    serde_json::from_slice(&payload).map_err(|_| CodeError::Malformed)
}

/// The code as an SVG QR image.
pub fn qr_svg(code: &str) -> Result<String, qrcode::types::QrError> {
    let qr = qrcode::QrCode::with_error_correction_level(code.as_bytes(), qrcode::EcLevel::M)?;
    Ok(qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// The public key as unpadded base64url (32 bytes), as published.
pub fn public_key_b64(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> TicketView {
        TicketView {
            ticket_id: 7,
            booking_id: 3,
            event_id: "gig".into(),
            holder: "alice".into(),
            seat: "A-1-2".into(),
            issued_at_ms: 1_000,
            checked_in_at_ms: None,
            revoked: false,
        }
    }

    #[test]
    fn codes_verify_and_tampering_fails() {
        // Goal: a signed code verifies; a changed payload or another key does not.
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let code = sign_code(&key, &ticket());
        let payload = verify_code(&key.verifying_key(), &code).unwrap();
        assert_eq!((payload.t, payload.s.as_str()), (7, "A-1-2"));
        let (_, sig) = code.split_once('.').unwrap();
        let mut forged = TicketPayload::of(&ticket());
        forged.s = "A-1-1".into();
        let forged = format!("{}.{sig}", B64.encode(serde_json::to_vec(&forged).unwrap()));
        assert_eq!(
            verify_code(&key.verifying_key(), &forged),
            Err(CodeError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            verify_code(&other.verifying_key(), &code),
            Err(CodeError::BadSignature)
        );
        assert_eq!(
            verify_code(&key.verifying_key(), "nonsense"),
            Err(CodeError::Malformed)
        );
        assert!(qr_svg(&code).unwrap().starts_with("<?xml"));
    }
}
