//! API tests over real HTTP on an ephemeral loopback port, against the
//! in-memory fake cluster: auth, idempotency, races, payments, tickets, the
//! waiting room, and the error contract.

mod common;

use std::sync::Arc;

use common::*;
use http_gateway::fake::FakeCluster;
use http_gateway::payments::sign_webhook;
use http_gateway::Cluster;
use serde_json::json;

#[tokio::test]
async fn sessions_and_authorisation() {
    // Goal: session tokens authenticate, forged or missing tokens get 401, users cannot use admin routes.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold_id = r.body["hold_id"].as_u64().unwrap();

    assert_problem(
        &gw.get(&format!("/v1/holds/{hold_id}"), None).await,
        401,
        "unauthorized",
    );
    assert_problem(
        &gw.get(&format!("/v1/holds/{hold_id}"), Some("forged.token"))
            .await,
        401,
        "unauthorized",
    );
    // A token signed with another secret is refused.
    let other =
        http_gateway::keys::Keys::for_tests("other", "x", "y").issue_session("alice", u64::MAX / 2);
    assert_problem(
        &gw.get(&format!("/v1/holds/{hold_id}"), Some(&other)).await,
        401,
        "unauthorized",
    );
    // Users are not admins.
    assert_problem(
        &gw.post("/v1/events", Some(&alice), event_spec("x")).await,
        403,
        "admin_only",
    );
    assert_problem(
        &gw.get("/v1/cluster", Some(&alice)).await,
        403,
        "admin_only",
    );
    // Another user's hold is "not found", not "forbidden".
    let bob = gw.session("bob").await;
    assert_problem(
        &gw.get(&format!("/v1/holds/{hold_id}"), Some(&bob)).await,
        404,
        "not_found",
    );
    assert_problem(
        &gw.delete(&format!("/v1/holds/{hold_id}"), Some(&bob)).await,
        404,
        "not_found",
    );
    let r = gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("active")),
        "{}",
        r.text
    );
    // The admin sees everything and the cluster endpoint.
    assert_eq!(
        gw.get(&format!("/v1/holds/{hold_id}"), Some(ADMIN))
            .await
            .status,
        200
    );
    let r = gw.get("/v1/cluster", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["leader_id"], json!(1));
}

#[tokio::test]
async fn idempotency_key_gives_the_same_hold_even_through_another_gateway() {
    // Goal: the same Idempotency-Key and user get the same hold, from either of two gateways.
    let fake = Arc::new(FakeCluster::new());
    let gw1 = start_on(fake.clone(), settings()).await;
    let gw2 = start_on(fake.clone(), settings()).await;
    gw1.open_event("gig").await;
    let alice = gw1.session("alice").await;
    let send = |gw: &common::Gw, key: &str| {
        gw.http
            .post(gw.url("/v1/events/gig/holds"))
            .bearer_auth(&alice)
            .header("Idempotency-Key", key)
            .json(&json!({ "best_available": { "count": 2, "section": "A" } }))
    };
    let a = gw1.send(send(&gw1, "key-1")).await;
    let b = gw2.send(send(&gw2, "key-1")).await;
    assert_eq!((a.status, b.status), (201, 201), "{} / {}", a.text, b.text);
    assert_eq!(a.body["hold_id"], b.body["hold_id"]);
    assert_eq!(a.body["seats"], b.body["seats"]);
    // Only two seats are held, not four.
    let map = gw1.seat_map("gig").await;
    assert_eq!(
        map.iter().map(|r| r.matches('H').count()).sum::<usize>(),
        2,
        "{map:?}"
    );
    // A new key is a new hold.
    let c = gw1.send(send(&gw1, "key-2")).await;
    assert_eq!(c.status, 201);
    assert_ne!(c.body["hold_id"], a.body["hold_id"]);
    // A malformed key is refused.
    let bad = gw1
        .send(send(&gw1, "").header("Idempotency-Key", "bad key with spaces"))
        .await;
    assert_problem(&bad, 400, "invalid_idempotency_key");
}

#[tokio::test]
async fn fifty_users_race_for_one_seat() {
    // Goal: of 50 concurrent users holding the same seat, exactly one wins and 49 get 409 naming it.
    let gw = Arc::new(start().await);
    gw.open_event("gig").await;
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(gw.session(&format!("fan{i}")).await);
    }
    let mut tasks = Vec::new();
    for t in tokens {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            gw.hold(&t, "gig", json!({ "seats": ["A-2-5"] })).await
        }));
    }
    let mut won = 0;
    let mut lost = 0;
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
}

#[tokio::test]
async fn checkout_ok_issues_verifiable_tickets_that_check_in_once() {
    // Goal: tok_ok books with signed tickets; verify, QR and check-in (once) work; tampering is caught.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "gig", &["A-1-1", "A-1-2"], "tok_ok")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking_id = r.body["booking_id"].as_u64().unwrap();
    let tickets = r.body["tickets"].as_array().unwrap().clone();
    assert_eq!(tickets.len(), 2);
    assert_eq!(gw.seat_map("gig").await[1], "BB........");
    // Paying again is idempotent: the same booking.
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

    let r = gw
        .post("/v1/tickets/verify", None, json!({ "code": code }))
        .await;
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
    let forged = format!("{}.{sig}", b64.encode(text));
    let r = gw
        .post("/v1/tickets/verify", None, json!({ "code": forged }))
        .await;
    assert_eq!(
        (r.status, &r.body["valid"], &r.body["reason"]),
        (200, &json!(false), &json!("bad_signature"))
    );
    let r = gw
        .post("/v1/tickets/verify", None, json!({ "code": "garbage" }))
        .await;
    assert_eq!(r.body["valid"], json!(false));

    let r = gw
        .post(
            &format!("/v1/tickets/{ticket_id}/check-in"),
            Some(ADMIN),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_problem(
        &gw.post(
            &format!("/v1/tickets/{ticket_id}/check-in"),
            Some(ADMIN),
            json!({}),
        )
        .await,
        409,
        "already_checked_in",
    );
    assert_problem(
        &gw.post(
            &format!("/v1/tickets/{ticket_id}/check-in"),
            Some(&alice),
            json!({}),
        )
        .await,
        403,
        "admin_only",
    );
}

#[tokio::test]
async fn declined_payment_releases_the_seats() {
    // Goal: tok_declined answers 402 and the seats are free again.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let before = gw.seat_map("gig").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "gig", &["A-3-3"], "tok_declined")
        .await;
    assert_problem(&r, 402, "payment_declined");
    assert_eq!(gw.seat_map("gig").await, before);
    let r = gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(r.body["status"], "released", "{}", r.text);
    assert_eq!(
        gw.pay.record(&format!("hold-{hold_id}")).unwrap().charges,
        0
    );
}

#[tokio::test]
async fn flaky_payment_is_retried_and_charged_once() {
    // Goal: tok_flaky fails twice, the gateway retries with the same key, one charge, 201.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "gig", &["A-1-5"], "tok_flaky")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let line = gw.pay.record(&format!("hold-{hold_id}")).unwrap();
    assert_eq!((line.attempts, line.charges), (3, 1));
    assert_eq!(gw.pay.records().len(), 1);
}

#[tokio::test]
async fn slow_payment_past_the_hold_is_refunded() {
    // Goal: a charge that completes after the hold lapsed is refunded and answered 410.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let fake = gw.fake.clone();
    // While the 300 ms charge is in flight, log time jumps past the payment window.
    let jump = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        fake.advance_ms(3_600_000);
    });
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "gig", &["A-1-7"], "tok_slow_300")
        .await;
    jump.await.unwrap();
    assert_problem(&r, 410, "hold_expired");
    assert_eq!(r.body["refunded"], json!(true));
    assert!(r.body["detail"].as_str().unwrap().contains("refunded"));
    let line = gw.pay.record(&format!("hold-{hold_id}")).unwrap();
    assert!(line.refunded && line.charges == 1);
    assert_eq!(gw.seat_map("gig").await[1], "..........");
}

#[tokio::test]
async fn pending_payment_finished_by_signed_webhook() {
    // Goal: tok_pending answers 202; forged webhooks are refused; a valid one confirms; a duplicate changes nothing.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "gig", &["A-2-1"], "tok_pending")
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let charge_id = r.body["charge_id"].as_str().unwrap().to_string();
    let r = gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(r.body["status"], "payment_pending");

    let body = serde_json::to_vec(&json!({
        "id": "evt_1", "type": "payment.succeeded", "data": { "hold_id": hold_id, "charge_id": charge_id }
    }))
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |sig: String, body: Vec<u8>| {
        gw.http
            .post(gw.url("/v1/payments/webhook"))
            .header("content-type", "application/json")
            .header("Booking-Signature", sig)
            .body(body)
    };
    let forged = gw
        .send(post(
            sign_webhook(b"wrong-secret", now, &body),
            body.clone(),
        ))
        .await;
    assert_problem(&forged, 400, "invalid_signature");
    let stale = gw
        .send(post(
            sign_webhook(WEBHOOK_SECRET.as_bytes(), now - 3_600, &body),
            body.clone(),
        ))
        .await;
    assert_problem(&stale, 400, "invalid_signature");
    let missing = gw
        .send(
            gw.http
                .post(gw.url("/v1/payments/webhook"))
                .body(body.clone()),
        )
        .await;
    assert_problem(&missing, 400, "invalid_signature");
    assert_eq!(
        gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice))
            .await
            .body["status"],
        "payment_pending"
    );

    let ok = gw
        .send(post(
            sign_webhook(WEBHOOK_SECRET.as_bytes(), now, &body),
            body.clone(),
        ))
        .await;
    assert_eq!(
        (ok.status, &ok.body["duplicate"], &ok.body["outcome"]),
        (200, &json!(false), &json!("confirmed")),
        "{}",
        ok.text
    );
    let hold = gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(hold.body["status"], "confirmed");
    let booking_id = hold.body["booking_id"].clone();
    let dup = gw
        .send(post(
            sign_webhook(WEBHOOK_SECRET.as_bytes(), now, &body),
            body.clone(),
        ))
        .await;
    assert_eq!(
        (dup.status, &dup.body["duplicate"]),
        (200, &json!(true)),
        "{}",
        dup.text
    );
    assert_eq!(
        gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice))
            .await
            .body["booking_id"],
        booking_id
    );
    assert_eq!(gw.seat_map("gig").await[2], "B.........");
}

#[tokio::test]
async fn cancel_refunds_returns_seats_and_revokes_tickets() {
    // Goal: cancelling a booking frees its seats, refunds, and its tickets stop verifying.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "gig", &["A-3-9", "A-3-10"], "tok_ok")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking_id = r.body["booking_id"].as_u64().unwrap();
    let code = r.body["tickets"][0]["code"].as_str().unwrap().to_string();
    assert_eq!(gw.seat_map("gig").await[3], "........BB");
    let bob = gw.session("bob").await;
    assert_problem(
        &gw.post(
            &format!("/v1/bookings/{booking_id}/cancel"),
            Some(&bob),
            json!({}),
        )
        .await,
        404,
        "not_found",
    );
    let r = gw
        .post(
            &format!("/v1/bookings/{booking_id}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["refunded"]),
        (200, &json!(true)),
        "{}",
        r.text
    );
    assert_eq!(gw.seat_map("gig").await[3], "..........");
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

#[tokio::test]
async fn waiting_room_requires_admission() {
    // Goal: holds on a waiting-room event need admission (403 not_admitted); queue tokens are bound to the user.
    let gw = start().await;
    let mut spec = event_spec("queued");
    spec["waiting_room"] = json!({ "enabled": true, "admit_batch": 1 });
    gw.create_event(spec).await;
    let alice = gw.session("alice").await;
    let bob = gw.session("bob").await;
    let carol = gw.session("carol").await;
    // Join before the sale opens, then open it.
    let a = gw
        .post("/v1/events/queued/queue", Some(&alice), json!({}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let b = gw
        .post("/v1/events/queued/queue", Some(&bob), json!({}))
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    let again = gw
        .post("/v1/events/queued/queue", Some(&alice), json!({}))
        .await;
    assert_eq!(
        (again.status, &again.body["already_joined"]),
        (200, &json!(true)),
        "{}",
        again.text
    );
    assert_eq!(
        gw.post("/v1/events/queued/sale/open", Some(ADMIN), json!({}))
            .await
            .status,
        200
    );

    // Carol never joined: refused.
    assert_problem(
        &gw.hold(&carol, "queued", json!({ "seats": ["A-1-1"] }))
            .await,
        403,
        "not_admitted",
    );

    let ta = a.body["queue_token"].as_str().unwrap();
    let tb = b.body["queue_token"].as_str().unwrap();
    let pa = gw
        .get(&format!("/v1/events/queued/queue/{ta}"), Some(&alice))
        .await;
    let pb = gw
        .get(&format!("/v1/events/queued/queue/{tb}"), Some(&bob))
        .await;
    assert_eq!(
        (pa.status, pb.status),
        (200, 200),
        "{} / {}",
        pa.text,
        pb.text
    );
    // Batch of one: exactly one of them is admitted first.
    let admitted: Vec<bool> = [&pa, &pb]
        .iter()
        .map(|r| r.body["admitted"].as_bool().unwrap())
        .collect();
    assert_eq!(
        admitted.iter().filter(|a| **a).count(),
        1,
        "{} / {}",
        pa.text,
        pb.text
    );
    let (waiting_token, waiting_user) = if admitted[0] {
        (&bob, tb)
    } else {
        (&alice, ta)
    };
    let waiting = if admitted[0] { &pb } else { &pa };
    assert_eq!(waiting.body["position"], json!(1));
    assert!(waiting.body["estimated_wait_ms"].as_u64().unwrap() > 0);
    assert_problem(
        &gw.hold(waiting_token, "queued", json!({ "seats": ["A-1-1"] }))
            .await,
        403,
        "not_admitted",
    );
    let admitted_token = if admitted[0] { &alice } else { &bob };
    assert_eq!(
        gw.hold(admitted_token, "queued", json!({ "seats": ["A-1-1"] }))
            .await
            .status,
        201
    );
    // Someone else's queue token is refused.
    assert_problem(
        &gw.get(
            &format!("/v1/events/queued/queue/{waiting_user}"),
            Some(&carol),
        )
        .await,
        403,
        "invalid_queue_token",
    );
    assert_problem(
        &gw.get("/v1/events/queued/queue/forged.token", Some(&alice))
            .await,
        403,
        "invalid_queue_token",
    );
}

#[tokio::test]
async fn event_layout_is_cacheable() {
    // Goal: the static layout carries ETag and Cache-Control, and If-None-Match gives 304.
    let gw = start().await;
    gw.open_event("gig").await;
    let r = gw.get("/v1/events/gig", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["sections"][0]["id"], "A");
    let etag = r.headers.get("etag").unwrap().to_str().unwrap().to_string();
    assert!(r
        .headers
        .get("cache-control")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("max-age"));
    let r = gw
        .send(
            gw.http
                .get(gw.url("/v1/events/gig"))
                .header("If-None-Match", &etag),
        )
        .await;
    assert_eq!(r.status, 304);
    let list = gw.get("/v1/events", None).await;
    assert_eq!(list.body["events"][0]["event_id"], "gig");
    let a = gw
        .get("/v1/events/gig/availability?consistency=stale", None)
        .await;
    assert_eq!((a.status, &a.body["consistency"]), (200, &json!("stale")));
    assert!(a.body["applied_index"].as_u64().unwrap() > 0);
    assert!(a.headers.get("x-applied-index").is_some());
}

#[tokio::test]
async fn no_leader_is_503_with_retry_after() {
    // Goal: a leaderless cluster answers 503 with Retry-After, and /readyz says not ready.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    gw.fake.set_unavailable(true);
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] })).await;
    assert_problem(&r, 503, "no_leader");
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(gw.get("/readyz", None).await.status, 503);
    assert_eq!(gw.get("/healthz", None).await.status, 200);
    gw.fake.set_unavailable(false);
    assert_eq!(gw.get("/readyz", None).await.status, 200);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    // Goal: past the per-user bucket, requests get 429 with Retry-After.
    let mut s = settings();
    s.rate_per_user_per_s = 1;
    s.rate_per_user_burst = 3;
    let gw = start_on(Arc::new(FakeCluster::new()), s).await;
    let alice = gw.session("alice").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(gw.get("/v1/holds/1", Some(&alice)).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("some request is limited");
    assert_problem(limited, 429, "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn openapi_metrics_and_page_are_served() {
    // Goal: /openapi.json documents every route, /metrics counts requests, / serves the page.
    let gw = start().await;
    let doc = gw.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/v1/events/{event_id}/holds",
        "/v1/holds/{hold_id}/checkout",
        "/v1/payments/webhook",
        "/v1/tickets/verify",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
    gw.get("/healthz", None).await;
    let m = gw.get("/metrics", None).await;
    assert!(
        m.text.contains(
            "gateway_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{}",
        m.text
    );
    assert!(m.text.contains("gateway_websocket_clients"));
    let page = gw.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<html") || page.text.contains("<!doctype"));
}

#[tokio::test]
async fn dozens_of_bad_requests_change_nothing() {
    // Goal: each malformed or unauthorised request gets its 4xx problem, never a 5xx, and the seat map is unchanged.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let bob = gw.session("bob").await;
    // Bob owns a hold and a booking that Alice will poke at.
    let r = gw.hold(&bob, "gig", json!({ "seats": ["A-3-1"] })).await;
    let bob_hold = r.body["hold_id"].as_u64().unwrap();
    let (_, r) = gw.hold_and_pay(&bob, "gig", &["A-3-2"], "tok_ok").await;
    let bob_booking = r.body["booking_id"].as_u64().unwrap();
    let before = gw.seat_map("gig").await;

    let big = "x".repeat(70 * 1024);
    let holds = "/v1/events/gig/holds";
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
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("malformed JSON", raw(M::POST, holds, Some(&alice), json_ct, "{\"seats\": [\"A-1-1\""), 400, "malformed_json"),
        ("not JSON at all", raw(M::POST, holds, Some(&alice), json_ct, "seats=A-1-1"), 400, "malformed_json"),
        ("wrong content type", raw(M::POST, holds, Some(&alice), Some("text/plain"), "{\"seats\":[\"A-1-1\"]}"), 415, "unsupported_media_type"),
        ("no content type", raw(M::POST, holds, Some(&alice), None, "{\"seats\":[\"A-1-1\"]}"), 415, "unsupported_media_type"),
        ("seats not a list", raw(M::POST, holds, Some(&alice), json_ct, "{\"seats\": \"A-1-1\"}"), 422, "invalid_body"),
        ("unknown field", raw(M::POST, holds, Some(&alice), json_ct, "{\"seat\": [\"A-1-1\"]}"), 422, "invalid_body"),
        ("empty selection", raw(M::POST, holds, Some(&alice), json_ct, "{}"), 422, "invalid_selection"),
        ("two selections", raw(M::POST, holds, Some(&alice), json_ct, "{\"seats\":[\"A-1-1\"],\"best_available\":{\"count\":1}}"), 422, "invalid_selection"),
        ("empty seat list", raw(M::POST, holds, Some(&alice), json_ct, "{\"seats\": []}"), 422, "invalid_selection"),
        ("unknown seat", raw(M::POST, holds, Some(&alice), json_ct, "{\"seats\": [\"A-9-99\"]}"), 422, "unknown_seat"),
        ("unparseable seat", raw(M::POST, holds, Some(&alice), json_ct, "{\"seats\": [\"nonsense\"]}"), 422, "unknown_seat"),
        ("negative count", raw(M::POST, holds, Some(&alice), json_ct, "{\"best_available\": {\"count\": -1}}"), 422, "invalid_body"),
        ("huge count", raw(M::POST, holds, Some(&alice), json_ct, "{\"best_available\": {\"count\": 99999999999}}"), 422, "invalid_body"),
        ("too many seats", raw(M::POST, holds, Some(&alice), json_ct, "{\"best_available\": {\"count\": 1000}}"), 422, "too_many_seats"),
        ("zero count", raw(M::POST, holds, Some(&alice), json_ct, "{\"general_admission\": {\"section\": \"GA\", \"count\": 0}}"), 422, "invalid_request"),
        ("GA on reserved section", raw(M::POST, holds, Some(&alice), json_ct, "{\"general_admission\": {\"section\": \"A\", \"count\": 1}}"), 422, "wrong_section_kind"),
        ("unknown section", raw(M::POST, holds, Some(&alice), json_ct, "{\"best_available\": {\"count\": 1, \"section\": \"Q\"}}"), 422, "unknown_section"),
        ("oversized body", raw(M::POST, holds, Some(&alice), json_ct, &format!("{{\"seats\": [\"{big}\"]}}")), 413, "payload_too_large"),
        ("no token", raw(M::POST, holds, None, json_ct, "{\"seats\": [\"A-1-1\"]}"), 401, "unauthorized"),
        ("forged token", raw(M::POST, holds, Some("eyJzdWIiOiJib2IifQ.AAAA"), json_ct, "{\"seats\": [\"A-1-1\"]}"), 401, "unauthorized"),
        ("admin token on a user route", raw(M::POST, holds, Some(ADMIN), json_ct, "{\"seats\": [\"A-1-1\"]}"), 403, "user_only"),
        ("unknown event", raw(M::POST, "/v1/events/nope/holds", Some(&alice), json_ct, "{\"seats\": [\"A-1-1\"]}"), 404, "unknown_event"),
        ("event id not a slug", raw(M::POST, "/v1/events/NOT_A_SLUG/holds", Some(&alice), json_ct, "{\"seats\": [\"A-1-1\"]}"), 404, "unknown_event"),
        ("someone else's hold: see", raw(M::GET, &format!("/v1/holds/{bob_hold}"), Some(&alice), None, ""), 404, "not_found"),
        ("someone else's hold: release", raw(M::DELETE, &format!("/v1/holds/{bob_hold}"), Some(&alice), None, ""), 404, "not_found"),
        ("someone else's hold: pay", raw(M::POST, &format!("/v1/holds/{bob_hold}/checkout"), Some(&alice), json_ct, "{\"payment_method\":\"tok_ok\"}"), 404, "not_found"),
        ("someone else's booking: cancel", raw(M::POST, &format!("/v1/bookings/{bob_booking}/cancel"), Some(&alice), None, ""), 404, "not_found"),
        ("hold id not a number", raw(M::GET, "/v1/holds/abc", Some(&alice), None, ""), 400, "invalid_path"),
        ("hold id negative", raw(M::GET, "/v1/holds/-1", Some(&alice), None, ""), 400, "invalid_path"),
        ("hold id overflows", raw(M::GET, "/v1/holds/999999999999999999999999", Some(&alice), None, ""), 400, "invalid_path"),
        ("unknown hold", raw(M::GET, "/v1/holds/424242", Some(&alice), None, ""), 404, "unknown_hold"),
        ("unknown payment method", raw(M::POST, &format!("/v1/holds/{bob_hold}/checkout"), Some(&bob), json_ct, "{\"payment_method\":\"tok_nope\"}"), 422, "invalid_payment_method"),
        ("wrong method on holds", raw(M::GET, holds, Some(&alice), None, ""), 405, "method_not_allowed"),
        ("wrong method on a hold", raw(M::PUT, &format!("/v1/holds/{bob_hold}"), Some(&bob), json_ct, "{}"), 405, "method_not_allowed"),
        ("unknown route", raw(M::GET, "/v1/nothing-here", None, None, ""), 404, "not_found"),
        ("unknown deep route", raw(M::GET, "/v1/events/gig/holds/1/2/3", None, None, ""), 404, "not_found"),
        ("bad consistency", raw(M::GET, "/v1/events/gig/availability?consistency=psychic", None, None, ""), 400, "invalid_query"),
        ("live without upgrade", raw(M::GET, "/v1/events/gig/live", None, None, ""), 400, "websocket_required"),
        ("bad session name", raw(M::POST, "/v1/sessions", None, json_ct, "{\"name\": \"\"}"), 422, "invalid_name"),
        ("session name with spaces", raw(M::POST, "/v1/sessions", None, json_ct, "{\"name\": \"a b\"}"), 422, "invalid_name"),
        ("user creates event", raw(M::POST, "/v1/events", Some(&alice), json_ct, "{}"), 403, "admin_only"),
        ("invalid event spec", raw(M::POST, "/v1/events", Some(ADMIN), json_ct, "{\"id\":\"gig\",\"name\":\"\",\"venue\":\"v\",\"starts_at\":\"2030-01-01T20:00:00Z\",\"sections\":[]}"), 422, "invalid_event"),
        ("duplicate event", raw(M::POST, "/v1/events", Some(ADMIN), json_ct, &event_spec("gig").to_string()), 409, "event_exists"),
        ("check-in unknown ticket", raw(M::POST, "/v1/tickets/999999/check-in", Some(ADMIN), None, ""), 404, "unknown_ticket"),
        ("verify without code", raw(M::POST, "/v1/tickets/verify", None, json_ct, "{}"), 422, "invalid_body"),
        ("webhook unsigned", raw(M::POST, "/v1/payments/webhook", None, json_ct, "{}"), 400, "invalid_signature"),
    ];
    assert!(cases.len() >= 25);
    for (name, req, status, code) in cases {
        let r = gw.send(req).await;
        assert!(r.status < 500, "{name}: got {} {}", r.status, r.text);
        assert_problem(&r, status, code);
    }
    assert_eq!(
        gw.seat_map("gig").await,
        before,
        "bad requests changed the seat map"
    );
}

#[tokio::test]
async fn fake_cluster_watch_resumes_and_reports_gaps() {
    // Goal: the fake's watch delivers from an index and asks for a resync once history is gone.
    use futures::StreamExt;
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] })).await;
    assert_eq!(r.status, 201);
    let index = gw.fake.applied_index();
    let mut w = gw.fake.watch("gig".into(), index).await.unwrap();
    match w.next().await.unwrap() {
        http_gateway::cluster::WatchItem::Changes { index: i, changes } => {
            assert_eq!(i, index);
            assert_eq!(changes[0].seat, "A-1-1");
        }
        other => panic!("{other:?}"),
    }
    gw.fake.forget_history_before(index + 1);
    let mut w = gw.fake.watch("gig".into(), index).await.unwrap();
    assert!(matches!(
        w.next().await.unwrap(),
        http_gateway::cluster::WatchItem::Resync { .. }
    ));
}

#[tokio::test]
async fn confirmed_bookings_reach_the_notification_sink_and_are_acked() {
    // Goal: the outbox sender writes each confirmed booking to the JSON-lines sink, then acks it.
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("outbox.jsonl");
    let mut s = settings();
    s.notification_sink = Some(sink.clone());
    s.notification_poll_ms = 20;
    let gw = start_on(Arc::new(FakeCluster::new()), s).await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let (_, r) = gw.hold_and_pay(&alice, "gig", &["A-1-1"], "tok_ok").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking_id = r.body["booking_id"].as_u64().unwrap();
    // Wait (bounded) for the sender's next rounds: delivered and acknowledged.
    let mut delivered = String::new();
    let mut outbox_len = usize::MAX;
    for _ in 0..250 {
        delivered = std::fs::read_to_string(&sink).unwrap_or_default();
        let answer = gw
            .fake
            .read(
                state_machine::Query::Outbox { limit: 10 },
                http_gateway::Consistency::Linearizable,
            )
            .await
            .unwrap();
        if let state_machine::QueryResult::Outbox(m) = answer.result {
            outbox_len = m.len();
        }
        if !delivered.is_empty() && outbox_len == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let line: serde_json::Value =
        serde_json::from_str(delivered.lines().next().expect("one line delivered")).unwrap();
    assert_eq!(
        (&line["kind"], &line["booking_id"], &line["holder"]),
        (
            &json!("booking_confirmed"),
            &json!(booking_id),
            &json!("alice")
        )
    );
    assert_eq!(outbox_len, 0, "the outbox was acknowledged");
}
