//! The seat-map page in headless Chromium, driven over the DevTools protocol:
//! sign in, pick the event, click two seats, hold, pay with `tok_ok`, and see
//! two tickets with QR codes while the live map shows the seats booked; a
//! second browser session (its own browser context) watching the same event
//! sees the held seat change colour on its canvas.
//!
//! Needs Debian's `chromium`. Without it the test says so loudly and skips,
//! unless CI=true and `.ci/apt-packages` lists chromium, where it fails.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Bound on every awaited condition.
const WAIT: Duration = Duration::from_secs(20);

/// Seat colours of the page (`COLORS` in static/index.html).
const AVAILABLE_RGB: &str = "#4caf50";
const HELD_RGB: &str = "#ffb300";

/// A page expression: the colour painted at the centre of `seat` on the map.
fn pixel(seat: &str) -> String {
    format!(
        r##"(() => {{ const s = seats.get("{seat}");
            const d = ctx.getImageData(s.x + cell / 2, s.y + cell / 2, 1, 1).data;
            return "#" + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join(""); }})()"##
    )
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

struct Cdp {
    ws: Ws,
    next_id: u64,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(Message::Text(
                json!({ "id": id, "method": method, "params": params })
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("devtools answers")
                .unwrap()
                .unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == json!(id) {
                    return v;
                }
            }
        }
    }

    /// Evaluates `expr` in the page and returns its JSON value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        assert!(r["result"]["exceptionDetails"].is_null(), "page threw: {r}");
        r["result"]["result"]["value"].clone()
    }

    /// Polls `expr` until it is true, at most [`WAIT`].
    async fn until(&mut self, what: &str, expr: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            // Before the page has loaded, the expression may throw: not yet.
            if self
                .eval(&format!(
                    "(() => {{ try {{ return ({expr}); }} catch (e) {{ return false; }} }})()"
                ))
                .await
                == json!(true)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("page never reached: {what}");
    }
}

#[tokio::test]
async fn seat_map_page_holds_pays_and_shows_tickets() {
    // Goal: a person can sign in, pick seats on the live map, hold, pay and see the QR tickets.
    let Some(browser) = chromium() else {
        testkit::skip_or_fail(
            "seat_map_page_holds_pays_and_shows_tickets",
            "chromium is not installed (.ci/apt-packages lists it)",
        );
        return;
    };
    let gw = start().await;
    gw.open_event("gig").await;
    let profile = tempfile::tempdir().unwrap();
    let _chrome = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            // This machine has no network beyond loopback: no background
            // fetches, updates or sync to be refused.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{}/", gw.base))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    // Chromium writes its DevTools port and browser endpoint to this file
    // once it listens.
    let port_file = profile.path().join("DevToolsActivePort");
    let deadline = tokio::time::Instant::now() + WAIT;
    let (port, browser_path) = loop {
        let text = std::fs::read_to_string(&port_file).unwrap_or_default();
        let mut lines = text.lines();
        if let (Some(Ok(port)), Some(path)) =
            (lines.next().map(|l| l.trim().parse::<u16>()), lines.next())
        {
            break (port, path.trim().to_string());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromium never opened its DevTools port"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target")
        .clone();
    let (ws, _) = tokio_tungstenite::connect_async(page["webSocketDebuggerUrl"].as_str().unwrap())
        .await
        .unwrap();
    let mut cdp = Cdp { ws, next_id: 0 };

    // A second browser session (its own browser context: no shared storage)
    // watching the same event, to see the first one's hold change colour.
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{browser_path}"))
        .await
        .expect("browser endpoint");
    let mut browser = Cdp { ws, next_id: 0 };
    let context = browser.call("Target.createBrowserContext", json!({})).await["result"]
        ["browserContextId"]
        .clone();
    let target = browser
        .call(
            "Target.createTarget",
            json!({ "url": format!("{}/?event=gig", gw.base), "browserContextId": context }),
        )
        .await["result"]["targetId"]
        .as_str()
        .expect("a target id")
        .to_string();
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/devtools/page/{target}"))
            .await
            .expect("second page endpoint");
    let mut watcher = Cdp { ws, next_id: 0 };
    // The second session opened `/?event=gig`: the map opens without a
    // pick in the drop-down.
    watcher
        .until(
            "live map of ?event=gig (second session)",
            r#"seats.size === 30 && document.getElementById("status").textContent.startsWith("live")"#,
        )
        .await;
    assert_eq!(watcher.eval(&pixel("A-2-4")).await, json!(AVAILABLE_RGB));

    cdp.until(
        "events listed",
        r#"document.getElementById("event").options.length > 1"#,
    )
    .await;
    cdp.eval(r#"document.getElementById("name").value = "alice"; document.getElementById("login").click(); true"#).await;
    cdp.until(
        "signed in",
        r#"document.getElementById("who").textContent.includes("alice")"#,
    )
    .await;
    // `gig` is the only event: the page opened it on its own.
    cdp.until(
        "live map of the only event, opened without a pick",
        r#"seats.size === 30 && document.getElementById("status").textContent.startsWith("live")"#,
    )
    .await;
    for seat in ["A-2-4", "A-2-5"] {
        cdp.eval(&format!(
            r#"(() => {{ const s = seats.get("{seat}"); const r = canvas.getBoundingClientRect();
                canvas.onclick({{ clientX: r.left + (s.x + cell / 2) * r.width / canvas.width,
                                  clientY: r.top + (s.y + cell / 2) * r.height / canvas.height }}); return true; }})()"#
        ))
        .await;
    }
    assert_eq!(
        cdp.eval("[...selected].sort().join(',')").await,
        json!("A-2-4,A-2-5")
    );
    cdp.eval(r#"document.getElementById("hold").click(); true"#)
        .await;
    cdp.until(
        "hold shown",
        r#"document.getElementById("holdbox").textContent.includes("A-2-4")"#,
    )
    .await;
    cdp.until(
        "seats held on the live map",
        r#"seats.get("A-2-4").state === "held""#,
    )
    .await;
    // The second session sees the held seats change colour, live.
    watcher
        .until(
            "seat held in the second session",
            r#"seats.get("A-2-4").state === "held""#,
        )
        .await;
    assert_eq!(watcher.eval(&pixel("A-2-4")).await, json!(HELD_RGB));
    cdp.eval(r##"document.querySelector("#holdbox button").click(); true"##)
        .await;
    cdp.until(
        "two QR tickets",
        r##"document.querySelectorAll("#tickets img").length === 2"##,
    )
    .await;
    cdp.until(
        "seats booked on the live map",
        r#"seats.get("A-2-5").state === "booked""#,
    )
    .await;
    assert_eq!(gw.seat_map("gig").await[2], "...BB.....");
}
