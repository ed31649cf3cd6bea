//! A gateway over the in-memory fake cluster with a 2 000-seat demo event,
//! for trying the seat-map page without a cluster:
//! `cargo run -p http-gateway --example fake_gateway --features fake-cluster -- 127.0.0.1:18080`.
//! Demo sessions and the simulated payment provider (both loopback only);
//! admin token `fake-gateway-admin-token`.

use std::sync::Arc;

use http_gateway::fake::FakeCluster;
use http_gateway::keys::Keys;
use http_gateway::settings::{AuthMode, AuthSettings, PaymentProviderKind};
use http_gateway::{AppState, Cluster, GatewaySettings, SimulatedProvider};
use state_machine::{Command, EventSpec, Request, RowSpec, SectionSpec, Selection};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let fake = Arc::new(FakeCluster::new());
    let rows = (1..=20)
        .map(|r| RowSpec {
            label: r.to_string(),
            seats: 100,
        })
        .collect();
    let spec = EventSpec {
        id: Some("demo".into()),
        name: "Demo Night".into(),
        venue: "Fake Arena".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms: 600_000,
        max_seats_per_hold: 8,
        waiting_room: None,
        sections: vec![
            SectionSpec::Reserved {
                id: "A".into(),
                name: "Stalls".into(),
                price_cents: 5_000,
                rows,
            },
            SectionSpec::GeneralAdmission {
                id: "GA".into(),
                name: "Floor".into(),
                capacity: 500,
                price_cents: 2_000,
            },
        ],
    };
    let mut request_id = 0;
    let mut submit = |command| {
        request_id += 1;
        let fake = fake.clone();
        async move {
            fake.submit(Request {
                client_id: 1,
                request_id,
                command,
            })
            .await
        }
    };
    submit(Command::CreateEvent(spec))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    submit(Command::OpenSale {
        event_id: "demo".into(),
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Colour the map a little: some fans hold a few seats.
    for fan in 0..40 {
        let selection = Selection::BestAvailable {
            count: 4,
            section: None,
            allow_non_adjacent: false,
        };
        let _ = submit(Command::Hold {
            event_id: "demo".into(),
            holder: format!("fan{fan}"),
            selection,
        })
        .await?;
    }
    let settings = GatewaySettings {
        listen: addr.parse()?,
        auth: AuthSettings {
            mode: AuthMode::Demo,
            ..AuthSettings::default()
        },
        payment_provider: PaymentProviderKind::Simulated,
        ..GatewaySettings::default()
    };
    let keys = Keys::for_tests("demo-secret", "demo-ticket-key", "demo-webhook")
        .with_admin_token("fake-gateway-admin-token");
    let state = AppState::new(
        settings.clone(),
        fake,
        Arc::new(SimulatedProvider::new()),
        keys,
    )?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    println!("seat map: http://{}/", listener.local_addr()?);
    http_gateway::serve_state(state, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
