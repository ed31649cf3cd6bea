//! The notification sinks, against real receivers:
//! - the signed webhook against a local HTTP receiver that refuses the first
//!   deliveries: every notification arrives (at least once, retried with the
//!   same `Booking-Notification-Id`), each signature verifies with the
//!   configured secret, and the outbox is acknowledged only after;
//! - SMTP against a real SMTP server (Debian's `python3-aiosmtpd`, written
//!   into a Maildir): a confirmed booking becomes an e-mail with a plain-text
//!   and an HTML part, the ticket's QR code attached, and a Message-ID made
//!   of the outbox id. Without aiosmtpd the test says so and skips, except
//!   under `CI=true`.
//!
//! Every wait polls with a bound.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use cluster_config::{NotificationSink, SmtpSecurity, SmtpSink, WebhookSink};
use common::{settings, start_on, Gw};
use http_gateway::fake::FakeCluster;
use http_gateway::payments::verify_webhook;
use http_gateway::Cluster;

const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns Some, for at most [`WAIT`].
async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the sender has acknowledged the whole outbox.
async fn wait_outbox_acked(gw: &Gw) {
    let deadline = Instant::now() + WAIT;
    while outbox_len(gw).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the outbox was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn outbox_len(gw: &Gw) -> usize {
    let answer = gw
        .fake()
        .read(
            state_machine::Query::Outbox { limit: 100 },
            http_gateway::Consistency::Linearizable,
        )
        .await
        .unwrap();
    match answer.result {
        state_machine::QueryResult::Outbox(m) => m.len(),
        other => panic!("{other:?}"),
    }
}

/// Two confirmed bookings (alice and bob); returns their booking ids.
async fn two_bookings(gw: &Gw) -> Vec<u64> {
    gw.open_event("gig").await;
    let mut ids = Vec::new();
    for (who, seat) in [("alice", "A-1-1"), ("bob", "A-1-2")] {
        let token = gw.session(who).await;
        let (_, r) = gw.hold_and_pay(&token, "gig", &[seat], "tok_ok").await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["booking_id"].as_u64().unwrap());
    }
    ids
}

/// One request the receiver saw: its signature header, notification id, body
/// and whether it was accepted.
#[derive(Clone, Debug)]
struct Seen {
    signature: String,
    id: String,
    body: Vec<u8>,
    accepted: bool,
}

// Goal: webhook notifications arrive signed, are retried after refusals, and
// are acknowledged only once accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_notifications_are_signed_retried_and_acked() {
    const REFUSE_FIRST: usize = 2;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    let accepted = seen.len() >= REFUSE_FIRST;
                    let header = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    seen.push(Seen {
                        signature: header("booking-signature"),
                        id: header("booking-notification-id"),
                        body: body.to_vec(),
                        accepted,
                    });
                    if accepted {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("notify-secret");
    std::fs::write(&secret_file, "notify-webhook-secret-for-the-test\n").unwrap();
    let mut s = settings();
    s.notifications = NotificationSink::Webhook(WebhookSink {
        url: format!("http://{addr}/hook"),
        secret_file: Some(secret_file.clone()),
    });
    s.notify_webhook_secret_file = Some(secret_file);
    s.notification_poll_ms = 20;
    let gw = start_on(Arc::new(FakeCluster::new()), s).await;
    let bookings = two_bookings(&gw).await;

    let accepted = wait_until("both notifications accepted", || {
        let seen = seen.lock().unwrap();
        let ok: Vec<Seen> = seen.iter().filter(|s| s.accepted).cloned().collect();
        (ok.len() >= 2).then_some(ok)
    })
    .await;
    wait_outbox_acked(&gw).await;
    let all = seen.lock().unwrap().clone();
    assert!(all.len() >= 2 + REFUSE_FIRST, "{all:?}");
    // The refused message was sent again under the same id.
    assert_eq!(all[0].id, all[REFUSE_FIRST].id, "{all:?}");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut delivered = Vec::new();
    for s in &accepted {
        verify_webhook(
            b"notify-webhook-secret-for-the-test",
            &s.signature,
            &s.body,
            now_s,
            300,
        )
        .unwrap_or_else(|e| panic!("signature of notification {}: {e}", s.id));
        let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["id"].to_string(), s.id);
        assert_eq!(body["kind"], "booking_confirmed");
        delivered.push(body["booking_id"].as_u64().unwrap());
    }
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered, bookings);
    // A wrong secret does not verify: the signature is real.
    assert!(verify_webhook(
        b"other",
        &accepted[0].signature,
        &accepted[0].body,
        now_s,
        300
    )
    .is_err());
}

/// A local aiosmtpd writing into `maildir`, killed on drop.
struct SmtpServer(std::process::Child);

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aiosmtpd_available() -> bool {
    std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success())
}

fn start_smtp(port: u16, maildir: &Path) -> SmtpServer {
    let child = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    SmtpServer(child)
}

// Goal: a confirmed booking reaches a real SMTP server as a multipart e-mail
// with the ticket's QR attached and a Message-ID from the outbox id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_notifications_reach_a_real_smtp_server() {
    if !aiosmtpd_available() {
        testkit::skip_or_fail(
            "smtp_notifications_reach_a_real_smtp_server",
            "no aiosmtpd for /usr/bin/python3 (Debian package python3-aiosmtpd; .ci/apt-packages lists it)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let port = testkit::free_addr().port();
    let _server = start_smtp(port, &maildir);
    // Wait until it accepts connections.
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut s = settings();
    s.notifications = NotificationSink::Smtp(SmtpSink {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password_file: None,
        from: "Tickets <tickets@example.com>".into(),
        // Demo holders are names, not addresses: they go to the box office.
        default_to: Some("box-office@example.com".into()),
    });
    s.notification_poll_ms = 20;
    let gw = start_on(Arc::new(FakeCluster::new()), s).await;
    let bookings = two_bookings(&gw).await;

    let new = maildir.join("new");
    let mails = wait_until("two e-mails in the Maildir", || {
        let files: Vec<String> = std::fs::read_dir(&new)
            .ok()?
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect();
        (files.len() >= 2).then_some(files)
    })
    .await;
    wait_outbox_acked(&gw).await;
    for booking in &bookings {
        let mail = mails
            .iter()
            .find(|m| m.contains(&format!("Subject: Your tickets: booking {booking}")))
            .unwrap_or_else(|| panic!("no e-mail for booking {booking}: {mails:#?}"));
        assert!(mail.contains("To: box-office@example.com"), "{mail}");
        assert!(
            mail.contains("From: Tickets <tickets@example.com>"),
            "{mail}"
        );
        assert!(
            mail.contains(&format!(".booking-{booking}@booking>")),
            "Message-ID: {mail}"
        );
        assert!(mail.contains("multipart/alternative"), "{mail}");
        assert!(mail.contains("Content-Type: text/plain"), "{mail}");
        assert!(mail.contains("Content-Type: text/html"), "{mail}");
        assert!(mail.contains("Content-Type: image/svg+xml"), "{mail}");
        assert!(
            mail.contains("Content-Disposition: attachment; filename=\"ticket-"),
            "{mail}"
        );
    }
}
