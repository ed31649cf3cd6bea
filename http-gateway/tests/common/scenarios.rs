//! The API scenarios of issue #4 written once, run over real HTTP against the
//! fake cluster (`tests/api.rs`, fast) and against a real 3-node cluster
//! (`tests/real_cluster.rs`). Each creates and uses its own event, so several
//! may run one after another on one cluster.
//!
//! Must not: depend on which cluster is underneath (no fake-only hooks);
//! checks that need the real cluster ask [`Gw::real`] first.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::*;

/// 50 users race for one seat: exactly one 201, the rest 409 naming the seat.
pub async fn one_seat_race(gw: &Arc<Gw>) {
    let event = "race-one";
    gw.open_event(event).await;
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(gw.session(&format!("fan{i}")).await);
    }
    let mut tasks = Vec::new();
    for t in tokens {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            gw.hold(&t, event, json!({ "seats": ["A-2-5"] })).await
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => won += 1,
            409 => {
                assert_problem(&r, 409, "seat_unavailable");
                assert_eq!(r.body["seats"], json!(["A-2-5"]));
                lost += 1;
            }
            s => panic!("unexpected {s}: {}", r.text),
        }
    }
    assert_eq!((won, lost), (1, 49));
    assert_eq!(gw.seat_map(event).await[2], "....H.....");
}

/// 20 users × 20 seats: every user asks, all at once, for 20 overlapping
/// pairs of the 20 seats of row 1..2 (in an order of its own). Every seat
/// ends with at most one owner: the winning holds are disjoint, and every
/// node's availability shows exactly their seats held.
pub async fn many_seat_race(gw: &Arc<Gw>) {
    const USERS: usize = 20;
    const SEATS: usize = 20;
    let event = "race-many";
    gw.open_event(event).await;
    let seat = |i: usize| format!("A-{}-{}", 1 + i / 10, 1 + i % 10);
    let mut tasks = Vec::new();
    for u in 0..USERS {
        let token = gw.session(&format!("fan{u}")).await;
        for k in 0..SEATS {
            let i = (k * 7 + u) % SEATS;
            let pair = [seat(i), seat((i + 1) % SEATS)];
            let gw = gw.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let r = gw.hold(&token, event, json!({ "seats": pair })).await;
                (u, r)
            }));
        }
    }
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        let (u, r) = t.await.unwrap();
        match r.status {
            201 => {
                won += 1;
                for s in r.body["seats"].as_array().unwrap() {
                    let s = s.as_str().unwrap().to_string();
                    let before = owner.insert(s.clone(), u);
                    assert!(before.is_none(), "{s} sold twice: {before:?} and {u}");
                }
            }
            409 => {
                assert_problem(&r, 409, "seat_unavailable");
                lost += 1;
            }
            s => panic!("unexpected {s}: {}", r.text),
        }
    }
    assert_eq!(won + lost, USERS * SEATS);
    // Every pair was asked for and nothing is released, so the winners are a
    // maximal set of disjoint pairs of a 20-seat cycle: at least 7.
    assert!(won * 3 >= SEATS, "too few winners: {won}");
    // The map every replica holds: exactly the won seats are held.
    let mut expected_rows = vec![vec!['.'; 10]; 3];
    for s in owner.keys() {
        let parts: Vec<usize> = s[2..].split('-').map(|p| p.parse().unwrap()).collect();
        expected_rows[parts[0] - 1][parts[1] - 1] = 'H';
    }
    let expected: Vec<String> = expected_rows
        .into_iter()
        .map(|r| r.into_iter().collect())
        .collect();
    let maps = if gw.real.is_some() {
        gw.seat_map_on_every_node(event).await
    } else {
        vec![gw.seat_map(event).await]
    };
    for map in maps {
        assert_eq!(&map[1..4], &expected[..], "{map:?}");
    }
}

/// The same Idempotency-Key twice (through `a` then `b`) gives the same hold;
/// a new key is a new hold; a malformed key is refused.
pub async fn same_idempotency_key_same_hold(a: &Gw, b: &Gw) {
    let event = "idem";
    a.open_event(event).await;
    let alice = a.session("alice").await;
    let send = |gw: &Gw, key: &str| {
        gw.http
            .post(gw.url(&format!("/v1/events/{event}/holds")))
            .bearer_auth(&alice)
            .header("Idempotency-Key", key)
            .json(&json!({ "best_available": { "count": 2, "section": "A" } }))
    };
    let first = a.send(send(a, "key-1")).await;
    let again = b.send(send(b, "key-1")).await;
    assert_eq!(
        (first.status, again.status),
        (201, 201),
        "{} / {}",
        first.text,
        again.text
    );
    assert_eq!(first.body["hold_id"], again.body["hold_id"]);
    assert_eq!(first.body["seats"], again.body["seats"]);
    // Only two seats are held, not four.
    let map = a.seat_map(event).await;
    assert_eq!(
        map.iter().map(|r| r.matches('H').count()).sum::<usize>(),
        2,
        "{map:?}"
    );
    let other = a.send(send(a, "key-2")).await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["hold_id"], first.body["hold_id"]);
    let bad = a
        .send(send(a, "").header("Idempotency-Key", "bad key with spaces"))
        .await;
    assert_problem(&bad, 400, "invalid_idempotency_key");
    // The same key with another body, through either gateway: 422, nothing
    // held, and the key still answers its first request.
    let before = a.seat_map(event).await;
    for gw in [a, b] {
        let reused = gw
            .send(
                gw.http
                    .post(gw.url(&format!("/v1/events/{event}/holds")))
                    .bearer_auth(&alice)
                    .header("Idempotency-Key", "key-1")
                    .json(&json!({ "best_available": { "count": 3, "section": "A" } })),
            )
            .await;
        assert_problem(&reused, 422, "idempotency_key_reused");
    }
    assert_eq!(a.seat_map(event).await, before);
    let again = b.send(send(b, "key-1")).await;
    assert_eq!(
        (again.status, &again.body["hold_id"]),
        (201, &first.body["hold_id"])
    );
}

/// tok_ok books with signed tickets; paying again is the same booking with
/// one charge; verify and QR work; a tampered or forged code fails
/// verification; check-in succeeds once, then 409.
pub async fn checkout_tickets_and_check_in(gw: &Gw) {
    let event = "paid";
    gw.open_event(event).await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, event, &["A-1-1", "A-1-2"], "tok_ok")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking_id = r.body["booking_id"].as_u64().unwrap();
    let tickets = r.body["tickets"].as_array().unwrap().clone();
    assert_eq!(tickets.len(), 2);
    assert_eq!(gw.seat_map(event).await[1], "BB........");
    let again = gw
        .post(
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&alice),
            json!({"payment_method": "tok_ok"}),
        )
        .await;
    assert_eq!(
        (again.status, &again.body["booking_id"]),
        (201, &json!(booking_id)),
        "{}",
        again.text
    );
    assert_eq!(
        gw.pay.record(&format!("hold-{hold_id}")).unwrap().charges,
        1
    );

    let r = gw
        .get(&format!("/v1/bookings/{booking_id}"), Some(&alice))
        .await;
    assert_eq!(r.status, 200);
    let bob = gw.session("bob").await;
    assert_problem(
        &gw.get(&format!("/v1/bookings/{booking_id}"), Some(&bob))
            .await,
        404,
        "not_found",
    );

    let ticket_id = tickets[0]["ticket_id"].as_u64().unwrap();
    let code = tickets[0]["code"].as_str().unwrap().to_string();
    let r = gw
        .get(&format!("/v1/tickets/{ticket_id}"), Some(&alice))
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (200, Some(code.as_str()))
    );
    let r = gw
        .send(
            gw.http
                .get(gw.url(&format!("/v1/tickets/{ticket_id}/qr.svg")))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains("<svg"),
        "{}",
        &r.text[..r.text.len().min(100)]
    );
    let r = gw.get("/v1/tickets/public-key", None).await;
    assert_eq!(r.body["algorithm"], "Ed25519");

    let verify = |code: String| async move {
        gw.post("/v1/tickets/verify", None, json!({ "code": code }))
            .await
    };
    let r = verify(code.clone()).await;
    assert_eq!(
        (r.status, &r.body["valid"]),
        (200, &json!(true)),
        "{}",
        r.text
    );
    // Tampered: change the seat in the payload, keep the signature.
    let (payload, sig) = code.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = String::from_utf8(b64.decode(payload).unwrap())
        .unwrap()
        .replace("A-1-1", "A-1-9");
    let r = verify(format!("{}.{sig}", b64.encode(&text))).await;
    assert_eq!(
        (r.status, &r.body["valid"], &r.body["reason"]),
        (200, &json!(false), &json!("bad_signature")),
        "{}",
        r.text
    );
    // Forged: a well-formed code signed with another key.
    let forged = http_gateway::keys::Keys::for_tests("t", "another-ticket-seed", "w");
    let forged_sig = {
        use ed25519_dalek::Signer;
        b64.encode(forged.ticket_key().sign(text.as_bytes()).to_bytes())
    };
    let r = verify(format!("{}.{forged_sig}", b64.encode(&text))).await;
    assert_eq!(
        (r.status, &r.body["valid"], &r.body["reason"]),
        (200, &json!(false), &json!("bad_signature")),
        "{}",
        r.text
    );
    let r = verify("garbage".into()).await;
    assert_eq!(r.body["valid"], json!(false));

    // The door: the code and the event, with the scan role (the admin token here).
    let check_in = format!("/v1/events/{event}/check-in");
    assert_problem(
        &gw.post(&check_in, Some(&alice), json!({ "code": code }))
            .await,
        403,
        "scan_only",
    );
    assert_problem(
        &gw.post(
            "/v1/events/elsewhere/check-in",
            Some(ADMIN),
            json!({ "code": code }),
        )
        .await,
        409,
        "wrong_event",
    );
    assert_problem(
        &gw.post(
            &check_in,
            Some(ADMIN),
            json!({ "code": format!("{}.{sig}", b64.encode(&text)) }),
        )
        .await,
        422,
        "invalid_code",
    );
    let r = gw
        .post(&check_in, Some(ADMIN), json!({ "code": code }))
        .await;
    assert_eq!(
        (r.status, r.body["ticket_id"].as_u64()),
        (200, Some(ticket_id)),
        "{}",
        r.text
    );
    assert_problem(
        &gw.post(&check_in, Some(ADMIN), json!({ "code": code }))
            .await,
        409,
        "already_checked_in",
    );
    // The public verifier never names the holder.
    let r = verify(code.clone()).await;
    assert!(r.body["ticket"].get("holder").is_none(), "{}", r.text);
    assert!(!r.text.contains("alice"), "{}", r.text);
}

/// tok_declined answers 402 and the seats are free again, nothing charged.
pub async fn declined_payment_releases_the_seats(gw: &Gw) {
    let event = "declined";
    gw.open_event(event).await;
    let alice = gw.session("alice").await;
    let before = gw.seat_map(event).await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, event, &["A-3-3"], "tok_declined")
        .await;
    assert_problem(&r, 402, "payment_declined");
    assert_eq!(gw.seat_map(event).await, before);
    let r = gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(r.body["status"], "released", "{}", r.text);
    assert_eq!(
        gw.pay.record(&format!("hold-{hold_id}")).unwrap().charges,
        0
    );
}

/// tok_flaky fails twice; the gateway retries with the same key: one charge, 201.
pub async fn flaky_payment_is_charged_once(gw: &Gw) {
    let event = "flaky";
    gw.open_event(event).await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, event, &["A-1-5"], "tok_flaky")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let line = gw.pay.record(&format!("hold-{hold_id}")).unwrap();
    assert_eq!((line.attempts, line.charges), (3, 1));
    assert_eq!(gw.seat_map(event).await[1], "....B.....");
}

/// Cancelling a booking refunds, frees its seats, and its tickets stop verifying.
pub async fn cancel_returns_seats(gw: &Gw) {
    let event = "cancelled";
    gw.open_event(event).await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, event, &["A-3-9", "A-3-10"], "tok_ok")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking_id = r.body["booking_id"].as_u64().unwrap();
    let code = r.body["tickets"][0]["code"].as_str().unwrap().to_string();
    assert_eq!(gw.seat_map(event).await[3], "........BB");
    let cancel = format!("/v1/bookings/{booking_id}/cancel");
    let bob = gw.session("bob").await;
    assert_problem(
        &gw.post(&cancel, Some(&bob), json!({})).await,
        404,
        "not_found",
    );
    let r = gw.post(&cancel, Some(&alice), json!({})).await;
    assert_eq!(
        (r.status, &r.body["refunded"]),
        (200, &json!(true)),
        "{}",
        r.text
    );
    assert_eq!(gw.seat_map(event).await[3], "..........");
    assert!(gw.pay.record(&format!("hold-{hold_id}")).unwrap().refunded);
    let v = gw
        .post("/v1/tickets/verify", None, json!({ "code": code }))
        .await;
    assert_eq!(
        (&v.body["valid"], &v.body["reason"]),
        (&json!(false), &json!("revoked")),
        "{}",
        v.text
    );
    let r = gw
        .get(&format!("/v1/bookings/{booking_id}"), Some(&alice))
        .await;
    assert_eq!(r.body["status"], "cancelled");
}

/// A table of bad requests: each gets its 4xx problem (never a 5xx), and
/// neither the seat maps nor any hold or booking changes.
pub async fn bad_requests_change_nothing(gw: &Gw) {
    let event = "bad";
    gw.open_event(event).await;
    let alice = gw.session("alice").await;
    let bob = gw.session("bob").await;
    // Bob owns a hold and a booking that Alice will poke at.
    let r = gw.hold(&bob, event, json!({ "seats": ["A-3-1"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob_hold = r.body["hold_id"].as_u64().unwrap();
    let (_, r) = gw.hold_and_pay(&bob, event, &["A-3-2"], "tok_ok").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob_booking = r.body["booking_id"].as_u64().unwrap();
    let bob_ticket = r.body["tickets"][0]["ticket_id"].as_u64().unwrap();
    let bob_code = r.body["tickets"][0]["code"].as_str().unwrap().to_string();
    // Alice's session token with the name inside changed to bob's.
    let tampered_session = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, tag) = alice.split_once('.').unwrap();
        let text = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
        format!("{}.{tag}", b64.encode(text.replace("alice", "bob")))
    };
    let before = gw.state_snapshot(&[event]).await;

    let big = "x".repeat(70 * 1024);
    let holds = format!("/v1/events/{event}/holds");
    let holds = holds.as_str();
    let raw =
        |method: reqwest::Method, path: &str, token: Option<&str>, ct: Option<&str>, body: &str| {
            let mut req = gw.http.request(method, gw.url(path)).body(body.to_string());
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            req
        };
    use reqwest::Method as M;
    let json_ct = Some("application/json");
    let a = Some(alice.as_str());
    let b = Some(bob.as_str());
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("malformed JSON", raw(M::POST, holds, a, json_ct, "{\"seats\": [\"A-1-1\""), 400, "malformed_json"),
        ("not JSON at all", raw(M::POST, holds, a, json_ct, "seats=A-1-1"), 400, "malformed_json"),
        ("wrong content type", raw(M::POST, holds, a, Some("text/plain"), "{\"seats\":[\"A-1-1\"]}"), 415, "unsupported_media_type"),
        ("no content type", raw(M::POST, holds, a, None, "{\"seats\":[\"A-1-1\"]}"), 415, "unsupported_media_type"),
        ("seats not a list", raw(M::POST, holds, a, json_ct, "{\"seats\": \"A-1-1\"}"), 422, "invalid_body"),
        ("seat not a string", raw(M::POST, holds, a, json_ct, "{\"seats\": [42]}"), 422, "invalid_body"),
        ("unknown field", raw(M::POST, holds, a, json_ct, "{\"seat\": [\"A-1-1\"]}"), 422, "invalid_body"),
        ("empty selection", raw(M::POST, holds, a, json_ct, "{}"), 422, "invalid_selection"),
        ("two selections", raw(M::POST, holds, a, json_ct, "{\"seats\":[\"A-1-1\"],\"best_available\":{\"count\":1}}"), 422, "invalid_selection"),
        ("empty seat list", raw(M::POST, holds, a, json_ct, "{\"seats\": []}"), 422, "invalid_selection"),
        ("unknown seat", raw(M::POST, holds, a, json_ct, "{\"seats\": [\"A-9-99\"]}"), 422, "unknown_seat"),
        ("unparseable seat", raw(M::POST, holds, a, json_ct, "{\"seats\": [\"nonsense\"]}"), 422, "unknown_seat"),
        ("negative count", raw(M::POST, holds, a, json_ct, "{\"best_available\": {\"count\": -1}}"), 422, "invalid_body"),
        ("huge count", raw(M::POST, holds, a, json_ct, "{\"best_available\": {\"count\": 99999999999}}"), 422, "invalid_body"),
        ("count a string", raw(M::POST, holds, a, json_ct, "{\"best_available\": {\"count\": \"2\"}}"), 422, "invalid_body"),
        ("too many seats", raw(M::POST, holds, a, json_ct, "{\"best_available\": {\"count\": 1000}}"), 422, "too_many_seats"),
        ("zero count", raw(M::POST, holds, a, json_ct, "{\"general_admission\": {\"section\": \"GA\", \"count\": 0}}"), 422, "invalid_request"),
        ("GA on reserved section", raw(M::POST, holds, a, json_ct, "{\"general_admission\": {\"section\": \"A\", \"count\": 1}}"), 422, "wrong_section_kind"),
        ("unknown section", raw(M::POST, holds, a, json_ct, "{\"best_available\": {\"count\": 1, \"section\": \"Q\"}}"), 422, "unknown_section"),
        ("seat already booked", raw(M::POST, holds, a, json_ct, "{\"seats\": [\"A-3-2\"]}"), 409, "seat_unavailable"),
        ("oversized body", raw(M::POST, holds, a, json_ct, &format!("{{\"seats\": [\"{big}\"]}}")), 413, "payload_too_large"),
        ("no token", raw(M::POST, holds, None, json_ct, "{\"seats\": [\"A-1-1\"]}"), 401, "unauthorized"),
        ("forged token", raw(M::POST, holds, Some("eyJzdWIiOiJib2IifQ.AAAA"), json_ct, "{\"seats\": [\"A-1-1\"]}"), 401, "unauthorized"),
        ("admin token on a user route", raw(M::POST, holds, Some(ADMIN), json_ct, "{\"seats\": [\"A-1-1\"]}"), 403, "user_only"),
        ("unknown event", raw(M::POST, "/v1/events/nope/holds", a, json_ct, "{\"seats\": [\"A-1-1\"]}"), 404, "unknown_event"),
        ("event id not a slug", raw(M::POST, "/v1/events/NOT_A_SLUG/holds", a, json_ct, "{\"seats\": [\"A-1-1\"]}"), 404, "unknown_event"),
        ("someone else's hold: see", raw(M::GET, &format!("/v1/holds/{bob_hold}"), a, None, ""), 404, "not_found"),
        ("someone else's hold: release", raw(M::DELETE, &format!("/v1/holds/{bob_hold}"), a, None, ""), 404, "not_found"),
        ("someone else's hold: pay", raw(M::POST, &format!("/v1/holds/{bob_hold}/checkout"), a, json_ct, "{\"payment_method\":\"tok_ok\"}"), 404, "not_found"),
        ("someone else's booking: cancel", raw(M::POST, &format!("/v1/bookings/{bob_booking}/cancel"), a, None, ""), 404, "not_found"),
        ("someone else's ticket", raw(M::GET, &format!("/v1/tickets/{bob_ticket}"), a, None, ""), 404, "not_found"),
        ("user checks a ticket in", raw(M::POST, &format!("/v1/events/{event}/check-in"), b, json_ct, &json!({ "code": bob_code }).to_string()), 403, "scan_only"),
        ("hold id not a number", raw(M::GET, "/v1/holds/abc", a, None, ""), 400, "invalid_path"),
        ("hold id negative", raw(M::GET, "/v1/holds/-1", a, None, ""), 400, "invalid_path"),
        ("hold id overflows", raw(M::GET, "/v1/holds/999999999999999999999999", a, None, ""), 400, "invalid_path"),
        ("unknown hold", raw(M::GET, "/v1/holds/424242", a, None, ""), 404, "not_found"),
        ("unknown payment method", raw(M::POST, &format!("/v1/holds/{bob_hold}/checkout"), b, json_ct, "{\"payment_method\":\"tok_nope\"}"), 422, "invalid_payment_method"),
        ("wrong method on holds", raw(M::GET, holds, a, None, ""), 405, "method_not_allowed"),
        ("wrong method on a hold", raw(M::PUT, &format!("/v1/holds/{bob_hold}"), b, json_ct, "{}"), 405, "method_not_allowed"),
        ("unknown route", raw(M::GET, "/v1/nothing-here", None, None, ""), 404, "not_found"),
        ("unknown deep route", raw(M::GET, &format!("/v1/events/{event}/holds/1/2/3"), None, None, ""), 404, "not_found"),
        ("bad consistency", raw(M::GET, &format!("/v1/events/{event}/availability?consistency=psychic"), None, None, ""), 400, "invalid_query"),
        ("live without upgrade", raw(M::GET, &format!("/v1/events/{event}/live"), None, None, ""), 400, "websocket_required"),
        ("bad session name", raw(M::POST, "/v1/sessions", None, json_ct, "{\"name\": \"\"}"), 422, "invalid_name"),
        ("session name with spaces", raw(M::POST, "/v1/sessions", None, json_ct, "{\"name\": \"a b\"}"), 422, "invalid_name"),
        ("user creates event", raw(M::POST, "/v1/events", a, json_ct, "{}"), 403, "admin_only"),
        ("user opens a sale", raw(M::POST, &format!("/v1/events/{event}/sale/close"), a, None, ""), 403, "admin_only"),
        ("invalid event spec", raw(M::POST, "/v1/events", Some(ADMIN), json_ct, "{\"id\":\"x\",\"name\":\"\",\"venue\":\"v\",\"starts_at\":\"2030-01-01T20:00:00Z\",\"sections\":[]}"), 422, "invalid_event"),
        ("duplicate event", raw(M::POST, "/v1/events", Some(ADMIN), json_ct, &event_spec(event).to_string()), 409, "event_exists"),
        ("check-in with a garbage code", raw(M::POST, &format!("/v1/events/{event}/check-in"), Some(ADMIN), json_ct, "{\"code\": \"garbage\"}"), 422, "invalid_code"),
        ("check-in at the wrong event", raw(M::POST, "/v1/events/elsewhere/check-in", Some(ADMIN), json_ct, &json!({ "code": bob_code }).to_string()), 409, "wrong_event"),
        ("old check-in route by id", raw(M::POST, &format!("/v1/tickets/{bob_ticket}/check-in"), Some(ADMIN), None, ""), 404, "not_found"),
        ("seat id with a control character", raw(M::POST, holds, a, json_ct, "{\"seats\": [\"A-1-\\u0000\"]}"), 422, "invalid_seat"),
        ("seat id too long", raw(M::POST, holds, a, json_ct, &format!("{{\"seats\": [\"{}\"]}}", "A".repeat(500))), 422, "invalid_seat"),
        ("seat id with a quote", raw(M::POST, holds, a, json_ct, "{\"seats\": [\"A-1-1\\\"\"]}"), 422, "invalid_seat"),
        ("section id too long", raw(M::POST, holds, a, json_ct, &format!("{{\"best_available\": {{\"count\": 1, \"section\": \"{}\"}}}}", "S".repeat(300))), 422, "invalid_section"),
        ("GA section with a space", raw(M::POST, holds, a, json_ct, "{\"general_admission\": {\"section\": \"G A\", \"count\": 1}}"), 422, "invalid_section"),
        ("bearer in upper case, forged", raw(M::POST, holds, None, json_ct, "{\"seats\": [\"A-1-1\"]}").header("authorization", "BEARER forged.token"), 401, "unauthorized"),
        ("session token with an edited name", raw(M::POST, holds, Some(&tampered_session), json_ct, "{\"seats\": [\"A-1-1\"]}"), 401, "unauthorized"),
        ("unknown booking", raw(M::GET, "/v1/bookings/424242", a, None, ""), 404, "not_found"),
        ("unknown ticket", raw(M::GET, "/v1/tickets/424242", a, None, ""), 404, "not_found"),
        ("verify without code", raw(M::POST, "/v1/tickets/verify", None, json_ct, "{}"), 422, "invalid_body"),
        ("webhook unsigned", raw(M::POST, "/v1/payments/webhook", None, json_ct, "{}"), 400, "invalid_signature"),
    ];
    assert!(cases.len() >= 25);
    for (name, req, status, code) in cases {
        let r = gw.send(req).await;
        assert!(r.status < 500, "{name}: got {} {}", r.status, r.text);
        assert_problem(&r, status, code);
        // Every answer carries the security headers and names no node.
        assert_eq!(
            r.headers
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{name}"
        );
        let csp = r
            .headers
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("");
        assert!(csp.contains("frame-ancestors 'none'"), "{name}: {csp}");
        assert!(r.headers.contains_key("referrer-policy"), "{name}");
        for leak in ["127.0.0.1", "tonic", "grpc", "transport error"] {
            assert!(!r.text.contains(leak), "{name} leaks {leak:?}: {}", r.text);
        }
    }
    assert_eq!(
        gw.state_snapshot(&[event]).await,
        before,
        "bad requests changed the seat map, a hold or a booking"
    );
}

/// A stranger's release changes nothing and leaves the owner's release
/// working; a booking cannot be cancelled inside the cutoff before its
/// event starts (default 24 h).
pub async fn strangers_and_late_cancels_change_nothing(gw: &Gw) {
    let event = "rules";
    gw.open_event(event).await;
    let alice = gw.session("alice").await;
    let bob = gw.session("bob").await;
    let r = gw.hold(&bob, event, json!({ "seats": ["A-1-1"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold_id = r.body["hold_id"].as_u64().unwrap();
    for _ in 0..2 {
        assert_problem(
            &gw.delete(&format!("/v1/holds/{hold_id}"), Some(&alice))
                .await,
            404,
            "not_found",
        );
    }
    let r = gw.delete(&format!("/v1/holds/{hold_id}"), Some(&bob)).await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("released")),
        "{}",
        r.text
    );
    assert_eq!(gw.seat_map(event).await[1], "..........");

    // An event that starts in an hour: inside the 24 h cutoff.
    let soon = "soon";
    let mut spec = event_spec(soon);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    spec["starts_at"] = json!(http_gateway::rfc3339_ms(now_ms + 3_600_000));
    gw.create_event(spec).await;
    let r = gw
        .post(
            &format!("/v1/events/{soon}/sale/open"),
            Some(ADMIN),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, r) = gw.hold_and_pay(&alice, soon, &["A-1-1"], "tok_ok").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking_id = r.body["booking_id"].as_u64().unwrap();
    assert_problem(
        &gw.post(
            &format!("/v1/bookings/{booking_id}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await,
        409,
        "cancel_closed",
    );
    assert_eq!(gw.seat_map(soon).await[1], "B.........");
}
