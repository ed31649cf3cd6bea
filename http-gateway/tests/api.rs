//! API tests over real HTTP on an ephemeral loopback port, against the
//! in-memory fake cluster: auth, idempotency, races, payments, tickets, the
//! waiting room, and the error contract. The scenarios shared with the
//! real-cluster tests (`tests/real_cluster.rs`) are in `common::scenarios`;
//! the tests here that only the fake can stage (no leader, log time jumps,
//! forgotten watch history) stay here.

mod common;

use std::sync::Arc;

use common::*;
use http_gateway::fake::FakeCluster;
use http_gateway::payments::sign_webhook;
use http_gateway::{Cluster, GatewaySettings};
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
    scenarios::same_idempotency_key_same_hold(&gw1, &gw2).await;
}

#[tokio::test]
async fn fifty_users_race_for_one_seat() {
    // Goal: of 50 concurrent users holding the same seat, exactly one wins and 49 get 409 naming it.
    scenarios::one_seat_race(&Arc::new(start().await)).await;
}

#[tokio::test]
async fn twenty_users_race_for_twenty_seats() {
    // Goal: 400 concurrent overlapping pair holds leave every seat with at most one owner.
    scenarios::many_seat_race(&Arc::new(start().await)).await;
}

#[tokio::test]
async fn checkout_ok_issues_verifiable_tickets_that_check_in_once() {
    // Goal: tok_ok books with signed tickets; verify, QR and check-in (once) work; tampering and forgery are caught.
    scenarios::checkout_tickets_and_check_in(&start().await).await;
}

#[tokio::test]
async fn declined_payment_releases_the_seats() {
    // Goal: tok_declined answers 402 and the seats are free again.
    scenarios::declined_payment_releases_the_seats(&start().await).await;
}

#[tokio::test]
async fn flaky_payment_is_retried_and_charged_once() {
    // Goal: tok_flaky fails twice, the gateway retries with the same key, one charge, 201.
    scenarios::flaky_payment_is_charged_once(&start().await).await;
}

#[tokio::test]
async fn slow_payment_past_the_hold_is_refunded() {
    // Goal: a charge that completes after the hold lapsed is refunded and answered 410.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let fake = gw.fake().clone();
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

    let total = gw
        .get(&format!("/v1/holds/{hold_id}"), Some(&alice))
        .await
        .body["total_cents"]
        .as_u64()
        .unwrap();
    let webhook = |kind: &str, hold_id: u64, charge_id: &str, amount_cents: u64| {
        serde_json::to_vec(&json!({
            "id": format!("evt_{kind}_{hold_id}_{charge_id}_{amount_cents}"), "type": kind,
            "data": { "hold_id": hold_id, "charge_id": charge_id, "amount_cents": amount_cents }
        }))
        .unwrap()
    };
    let body = webhook("payment.succeeded", hold_id, &charge_id, total);
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
    // Properly signed, but not the payment begun for this hold: another
    // charge, another amount, another hold (bob's, with no payment begun).
    let bob = gw.session("bob").await;
    let r = gw.hold(&bob, "gig", json!({ "seats": ["A-2-5"] })).await;
    let bob_hold = r.body["hold_id"].as_u64().unwrap();
    for (what, wrong, status, code) in [
        (
            "another charge",
            webhook("payment.succeeded", hold_id, "ch_other", total),
            409,
            "charge_mismatch",
        ),
        (
            "another amount",
            webhook("payment.succeeded", hold_id, &charge_id, total - 1),
            409,
            "charge_mismatch",
        ),
        (
            "a failure of another charge",
            webhook("payment.failed", hold_id, "ch_other", total),
            409,
            "charge_mismatch",
        ),
        (
            "another hold",
            webhook("payment.succeeded", bob_hold, &charge_id, total),
            409,
            "charge_mismatch",
        ),
    ] {
        let r = gw
            .send(post(
                sign_webhook(WEBHOOK_SECRET.as_bytes(), now, &wrong),
                wrong.clone(),
            ))
            .await;
        assert!(
            r.status == status && r.body["code"] == code,
            "{what}: {} {}",
            r.status,
            r.text
        );
    }
    assert_eq!(
        gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice))
            .await
            .body["status"],
        "payment_pending"
    );
    assert_eq!(
        gw.get(&format!("/v1/holds/{bob_hold}"), Some(&bob))
            .await
            .body["status"],
        "active"
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
    // Alice's seat booked; bob's hold (no payment begun) untouched.
    assert_eq!(gw.seat_map("gig").await[2], "B...H.....");
}

#[tokio::test]
async fn cancel_refunds_returns_seats_and_revokes_tickets() {
    // Goal: cancelling a booking frees its seats, refunds, and its tickets stop verifying.
    scenarios::cancel_returns_seats(&start().await).await;
}

#[tokio::test]
async fn waiting_room_blocks_are_no_larger_than_queue_block_max() {
    // Goal: `[gateway] queue_block_max` bounds the positions one log write
    // reserves: 10 joins with a bound of 2 cost at least 5 writes (with the
    // default bound a quick burst costs 4: blocks of 1, 2, 4 and 8).
    let fake = Arc::new(FakeCluster::new());
    let gw = start_on(
        fake.clone(),
        GatewaySettings {
            queue_block_max: 2,
            ..settings()
        },
    )
    .await;
    let mut spec = event_spec("capped");
    spec["waiting_room"] = json!({ "enabled": true });
    gw.create_event(spec).await;
    let mut fans = Vec::new();
    for i in 0..10 {
        fans.push(gw.session(&format!("fan{i}")).await);
    }
    let before = fake.applied_index();
    let mut positions = std::collections::BTreeSet::new();
    for fan in &fans {
        let r = gw
            .post("/v1/events/capped/queue", Some(fan), json!({}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        positions.insert(r.body["queue_position"].as_u64().expect("position"));
    }
    assert_eq!(positions.len(), 10, "a position was handed out twice");
    let writes = fake.applied_index() - before;
    assert!(
        writes >= 5,
        "{writes} log writes for 10 joins: a block was larger than 2"
    );
}

#[tokio::test]
async fn waiting_room_requires_admission() {
    // Goal: joining answers a signed token with a position (before the
    // opening: pending the shuffle); holds on a waiting-room event need an
    // admitted token (403 not_admitted before, invalid_queue_token for a
    // forged one or another user's); admission is one place per round.
    let gw = start().await;
    let mut spec = event_spec("queued");
    spec["waiting_room"] = json!({ "enabled": true, "admit_batch": 1 });
    // A 1 s admission grace (a tenth of the window), so positions nobody
    // holds do not keep the test waiting.
    spec["hold_ttl_ms"] = json!(10_000);
    gw.create_event(spec).await;
    let alice = gw.session("alice").await;
    let bob = gw.session("bob").await;
    let carol = gw.session("carol").await;
    // Join before the sale opens, then open it.
    let a = gw
        .post("/v1/events/queued/queue", Some(&alice), json!({}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["state"], json!("pending_shuffle"), "{}", a.text);
    let b = gw
        .post("/v1/events/queued/queue", Some(&bob), json!({}))
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    assert_ne!(a.body["queue_position"], b.body["queue_position"]);
    assert_eq!(
        gw.post("/v1/events/queued/sale/open", Some(ADMIN), json!({}))
            .await
            .status,
        200
    );
    let ta = a.body["queue_token"].as_str().unwrap().to_string();
    let tb = b.body["queue_token"].as_str().unwrap().to_string();

    // Carol never joined: refused, with no token or with somebody else's.
    assert_problem(
        &gw.hold(&carol, "queued", json!({ "seats": ["A-1-1"] }))
            .await,
        403,
        "not_admitted",
    );
    assert_problem(
        &gw.hold(
            &carol,
            "queued",
            json!({ "seats": ["A-1-1"], "queue_token": ta }),
        )
        .await,
        403,
        "invalid_queue_token",
    );
    assert_problem(
        &gw.hold(
            &carol,
            "queued",
            json!({ "seats": ["A-1-1"], "queue_token": "forged.token" }),
        )
        .await,
        403,
        "invalid_queue_token",
    );

    // Batch of one: the first of them admitted is alone.
    let deadline = std::time::Instant::now() + WAIT;
    let (pa, pb) = loop {
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
        if pa.body["admitted"] == json!(true) || pb.body["admitted"] == json!(true) {
            break (pa, pb);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody admitted: {} / {}",
            pa.text,
            pb.text
        );
        tokio::time::sleep(POLL).await;
    };
    let alice_first = pa.body["admitted"] == json!(true);
    assert_ne!(
        alice_first,
        pb.body["admitted"] == json!(true),
        "{} / {}",
        pa.text,
        pb.text
    );
    let (first, first_token, second, second_token) = if alice_first {
        (&alice, &ta, &bob, &tb)
    } else {
        (&bob, &tb, &alice, &ta)
    };
    // The admitted fan holds with the token, then again under the same admission.
    let held = gw
        .hold(
            first,
            "queued",
            json!({ "seats": ["A-1-1"], "queue_token": first_token }),
        )
        .await;
    assert_eq!(held.status, 201, "{}", held.text);
    let again = gw
        .hold(first, "queued", json!({ "seats": ["A-1-2"] }))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    // The other waits (the one shopping fills the batch) and is refused.
    let waiting = gw
        .get(
            &format!("/v1/events/queued/queue/{second_token}"),
            Some(second),
        )
        .await;
    assert_eq!(waiting.body["state"], json!("waiting"), "{}", waiting.text);
    assert!(waiting.body["position"].as_u64().unwrap() >= 1);
    assert!(waiting.body["estimated_wait_ms"].as_u64().unwrap() > 0);
    // The poll hint: at least 250 ms, at most half the 10 s window.
    let poll_after = waiting.body["poll_after_ms"].as_u64().expect("poll hint");
    assert!((250..=5_000).contains(&poll_after), "{}", waiting.text);
    assert_problem(
        &gw.hold(
            second,
            "queued",
            json!({ "seats": ["A-1-3"], "queue_token": second_token }),
        )
        .await,
        403,
        "not_admitted",
    );
    // Someone else's queue token is refused.
    assert_problem(
        &gw.get(
            &format!("/v1/events/queued/queue/{second_token}"),
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
async fn a_crowd_of_joins_gets_distinct_positions_across_blocks() {
    // Goal: joins in a burst, served from blocks reserved ahead while
    // earlier ones are still handed out, never share a position, and cost
    // far fewer log writes than joins.
    let gw = start().await;
    let mut spec = event_spec("crowd");
    spec["waiting_room"] = json!({ "enabled": true, "admit_batch": 10 });
    gw.create_event(spec).await;
    assert_eq!(
        gw.post("/v1/events/crowd/sale/open", Some(ADMIN), json!({}))
            .await
            .status,
        200
    );
    let fan = gw.session("fan").await;
    let (tasks, per_task) = (32, 125);
    let mut joins = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (http, url, fan) = (
            gw.http.clone(),
            gw.url("/v1/events/crowd/queue"),
            fan.clone(),
        );
        joins.spawn(async move {
            let mut positions = Vec::new();
            for _ in 0..per_task {
                let r = http
                    .post(&url)
                    .bearer_auth(&fan)
                    .send()
                    .await
                    .expect("join");
                assert_eq!(r.status(), 201);
                let v: serde_json::Value = r.json().await.expect("json");
                assert!(
                    v["poll_after_ms"].is_u64() || v["admitted"] == json!(true),
                    "{v}"
                );
                positions.push(v["queue_position"].as_u64().expect("position"));
            }
            positions
        });
    }
    let mut all = Vec::new();
    while let Some(p) = joins.join_next().await {
        all.extend(p.expect("joiner"));
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a position handed out twice");
    let metrics = gw.get("/metrics", None).await.text;
    let writes: f64 = metrics
        .lines()
        .find(|l| l.starts_with("gateway_cluster_submits_total{answered=\"log\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("log submits counted");
    assert!(
        writes < n as f64 / 10.0,
        "{writes} log writes for {n} joins"
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
    gw.fake().set_unavailable(true);
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] })).await;
    assert_problem(&r, 503, "no_leader");
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(gw.get("/readyz", None).await.status, 503);
    assert_eq!(gw.get("/healthz", None).await.status, 200);
    gw.fake().set_unavailable(false);
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
    // The standard process series, and the CPU time in ms that the bench's
    // CPU per request reads.
    assert!(m.text.contains("process_resident_memory_bytes"));
    assert!(m.text.contains("process_cpu_seconds_total"));
    let cpu_ms: u64 = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("gateway_process_cpu_ms_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no gateway_process_cpu_ms_total in {}", m.text));
    assert!(cpu_ms > 0, "{cpu_ms} ms of CPU");
    let page = gw.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<html") || page.text.contains("<!doctype"));
}

#[tokio::test]
async fn dozens_of_bad_requests_change_nothing() {
    // Goal: each malformed or unauthorised request gets its 4xx problem, never a 5xx, and nothing changes.
    scenarios::bad_requests_change_nothing(&start().await).await;
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
    let index = gw.fake().applied_index();
    let mut w = gw.fake().watch("gig".into(), index).await.unwrap();
    match w.next().await.unwrap() {
        http_gateway::cluster::WatchItem::Changes { index: i, changes } => {
            assert_eq!(i, index);
            assert_eq!(changes[0].seat, "A-1-1");
        }
        other => panic!("{other:?}"),
    }
    gw.fake().forget_history_before(index + 1);
    let mut w = gw.fake().watch("gig".into(), index).await.unwrap();
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
    s.notifications = cluster_config::NotificationSink::File(sink.clone());
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
            .fake()
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

#[tokio::test]
async fn strangers_and_late_cancels_change_nothing() {
    // Goal: a stranger's DELETE leaves the owner's release working; no cancel inside the cutoff.
    scenarios::strangers_and_late_cancels_change_nothing(&start().await).await;
}
