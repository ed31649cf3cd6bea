//! `bookctl`: the operator's and scripter's command line for a booking cluster.
//!
//! Human tables by default, `--json` for scripts (one JSON document on stdout).
//! Exit codes: 0 ok; 1 refused or rejected by the store (seat taken, not the
//! owner, ...); 2 usage error, bad input file, or cluster unreachable (nothing
//! was applied); 3 outcome unknown (a write may or may not have been applied;
//! the message says which request id to check).
//!
//! Owns: argument parsing, output formatting and exit codes. Must not: talk to
//! a node except through the `client` library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::{ArgGroup, Parser, Subcommand};
use client::state_machine::{
    AvailabilityView, BookingView, Command, EventSpec, EventSummary, EventView, Query, QueryResult,
    Reply, Selection,
};
use client::{Client, ClientError, ClientOptions, ClusterStatus, Consistency, Ids, NodeStatus};
use serde_json::json;

/// Talk to a booking cluster.
#[derive(Parser, Debug)]
#[command(name = "bookctl", version, about)]
struct Cli {
    /// Cluster file whose [[node]] addresses to use (default: ./cluster.toml).
    #[arg(
        long,
        global = true,
        env = "BOOKCTL_CONFIG",
        conflicts_with = "endpoints"
    )]
    config: Option<PathBuf>,
    /// Comma-separated node addresses (host:port or http://host:port) instead of a file.
    #[arg(long, global = true, env = "BOOKCTL_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of one attempt against one node, in milliseconds.
    #[arg(long, global = true, default_value_t = 3_000)]
    timeout_ms: u64,
    /// Read from the answering node's local state (may be behind) instead of linearizably.
    #[arg(long, global = true)]
    stale: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Leader, term, and each member's role and applied index.
    Status,
    /// Create, list, show, open and close events.
    Event {
        #[command(subcommand)]
        command: EventCmd,
    },
    /// The seat map of an event.
    Seats {
        /// Event id.
        event: String,
    },
    /// Hold seats for a holder.
    #[command(group(ArgGroup::new("selection").required(true).args(["seats", "best", "ga"])))]
    Hold {
        /// Event id.
        event: String,
        /// Exactly these seats, e.g. A-1-1,A-1-2 (all or nothing).
        #[arg(long, value_delimiter = ',')]
        seats: Vec<String>,
        /// N best available adjacent seats.
        #[arg(long)]
        best: Option<u32>,
        /// With --best: only in this section.
        #[arg(long, requires = "best")]
        section: Option<String>,
        /// With --best: fall back to non-adjacent seats.
        #[arg(long, requires = "best")]
        allow_non_adjacent: bool,
        /// General admission: SECTION:N places.
        #[arg(long)]
        ga: Option<String>,
        /// Who holds (the owner name later calls must match).
        #[arg(long)]
        holder: String,
    },
    /// Release a hold (owner only).
    Release {
        /// Hold id.
        hold: u64,
        #[arg(long)]
        holder: String,
    },
    /// Confirm a hold into a booking (owner only).
    Confirm {
        /// Hold id.
        hold: u64,
        /// The payment's reference.
        #[arg(long)]
        payment_ref: String,
        #[arg(long)]
        holder: String,
    },
    /// Bookings.
    Booking {
        #[command(subcommand)]
        command: BookingCmd,
    },
    /// Membership: add or remove a node while serving.
    Node {
        #[command(subcommand)]
        command: NodeCmd,
    },
    /// Ask every node to build a snapshot now and purge its log.
    Snapshot,
}

#[derive(Subcommand, Debug)]
enum EventCmd {
    /// Create an event from a JSON file (an EventSpec).
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// List events.
    List,
    /// Show one event.
    Show { id: String },
    /// Open an event's sale.
    Open { id: String },
    /// Close an event's sale.
    Close { id: String },
}

#[derive(Subcommand, Debug)]
enum BookingCmd {
    /// Show one booking with its tickets.
    Show { id: u64 },
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Add a node: as a learner (waiting until it caught up), then as a voter.
    Add {
        id: u64,
        /// The new node's gRPC address, host:port.
        addr: String,
    },
    /// Remove a node from the membership.
    Remove { id: u64 },
}

/// An error the operator must fix (exit 2).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bookctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bookctl: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(client_error) = e.downcast_ref::<ClientError>() {
        return match client_error {
            ClientError::Refused(_) | ClientError::Rejected { .. } => 1,
            ClientError::Unavailable { .. } | ClientError::InvalidEndpoint { .. } => 2,
            ClientError::OutcomeUnknown { .. } | ClientError::Protocol { .. } => 3,
        };
    }
    2
}

fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let options = ClientOptions {
        request_timeout_ms: cli.timeout_ms,
        retry_budget_ms: 15_000,
        ..ClientOptions::default()
    };
    if !cli.endpoints.is_empty() {
        return Ok(Client::with_options(&cli.endpoints, options)?);
    }
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("cluster.toml"));
    let config = cluster_config::ClusterConfig::load(&path).map_err(|e| Usage(e.to_string()))?;
    Ok(Client::from_config(&config, options)?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = connect(&cli)?;
    let consistency = if cli.stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    };
    match &cli.command {
        Cmd::Status => status(&client, cli.json).await,
        Cmd::Event { command } => match command {
            EventCmd::Create { file } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
                let spec: EventSpec = serde_json::from_str(&text).map_err(|e| {
                    Usage(format!(
                        "{} is not an event definition: {e}",
                        file.display()
                    ))
                })?;
                let reply = write(&client, Command::CreateEvent(spec)).await?;
                let Reply::EventCreated { event_id } = reply else {
                    bail!("unexpected reply {reply:?}")
                };
                print(cli.json, json!({ "event_id": event_id }), || {
                    format!("created event {event_id}")
                });
                Ok(())
            }
            EventCmd::List => {
                let QueryResult::Events(events) = read(&client, Query::Events, consistency).await?
                else {
                    bail!("unexpected answer to an events query")
                };
                print(cli.json, serde_json::to_value(&events)?, || {
                    events_table(&events)
                });
                Ok(())
            }
            EventCmd::Show { id } => {
                let QueryResult::Event(event) = read(
                    &client,
                    Query::Event {
                        event_id: id.clone(),
                    },
                    consistency,
                )
                .await?
                else {
                    bail!("unexpected answer to an event query")
                };
                let event = event.map_err(ClientError::Refused)?;
                print(cli.json, serde_json::to_value(&event)?, || {
                    event_text(&event)
                });
                Ok(())
            }
            EventCmd::Open { id } => {
                let reply = write(
                    &client,
                    Command::OpenSale {
                        event_id: id.clone(),
                    },
                )
                .await?;
                print(
                    cli.json,
                    json!({ "event_id": id, "sale": "open", "reply": reply }),
                    || format!("sale of {id} is open"),
                );
                Ok(())
            }
            EventCmd::Close { id } => {
                let reply = write(
                    &client,
                    Command::CloseSale {
                        event_id: id.clone(),
                    },
                )
                .await?;
                print(
                    cli.json,
                    json!({ "event_id": id, "sale": "closed", "reply": reply }),
                    || format!("sale of {id} is closed"),
                );
                Ok(())
            }
        },
        Cmd::Seats { event } => {
            let QueryResult::Availability(view) = read(
                &client,
                Query::Availability {
                    event_id: event.clone(),
                },
                consistency,
            )
            .await?
            else {
                bail!("unexpected answer to an availability query")
            };
            let view = view.map_err(ClientError::Refused)?;
            print(cli.json, serde_json::to_value(&view)?, || seats_text(&view));
            Ok(())
        }
        Cmd::Hold {
            event,
            seats,
            best,
            section,
            allow_non_adjacent,
            ga,
            holder,
        } => {
            let selection = if !seats.is_empty() {
                Selection::Seats(seats.clone())
            } else if let Some(count) = best {
                Selection::BestAvailable {
                    count: *count,
                    section: section.clone(),
                    allow_non_adjacent: *allow_non_adjacent,
                }
            } else if let Some(ga) = ga {
                let (section, count) = ga
                    .rsplit_once(':')
                    .and_then(|(s, n)| Some((s.to_string(), n.parse::<u32>().ok()?)))
                    .ok_or_else(|| {
                        Usage(format!("--ga {ga:?}: expected SECTION:N, e.g. floor:2"))
                    })?;
                Selection::GeneralAdmission { section, count }
            } else {
                return Err(Usage("give --seats, --best or --ga".into()).into());
            };
            let reply = write(
                &client,
                Command::Hold {
                    event_id: event.clone(),
                    holder: holder.clone(),
                    selection,
                },
            )
            .await?;
            let Reply::Held {
                hold_id,
                event_id,
                seats,
                general_admission,
                expires_at_ms,
                total_cents,
            } = reply
            else {
                bail!("unexpected reply {reply:?}")
            };
            let value = json!({
                "hold_id": hold_id, "event_id": event_id, "seats": seats,
                "general_admission": general_admission, "expires_at_ms": expires_at_ms, "total_cents": total_cents,
            });
            print(cli.json, value, || {
                let what = match &general_admission {
                    Some(ga) => {
                        format!("{} general admission place(s) in {}", ga.count, ga.section)
                    }
                    None => seats.join(", "),
                };
                format!(
                    "hold {hold_id} on {event_id}: {what}; total {}; expires {}",
                    money(total_cents),
                    when(expires_at_ms)
                )
            });
            Ok(())
        }
        Cmd::Release { hold, holder } => {
            let reply = write(
                &client,
                Command::Release {
                    hold_id: *hold,
                    holder: holder.clone(),
                },
            )
            .await?;
            let Reply::Released { hold_id } = reply else {
                bail!("unexpected reply {reply:?}")
            };
            print(
                cli.json,
                json!({ "hold_id": hold_id, "released": true }),
                || format!("released hold {hold_id}"),
            );
            Ok(())
        }
        Cmd::Confirm {
            hold,
            payment_ref,
            holder,
        } => {
            let reply = write(
                &client,
                Command::Confirm {
                    hold_id: *hold,
                    holder: holder.clone(),
                    payment_ref: payment_ref.clone(),
                },
            )
            .await?;
            let Reply::Confirmed(booking) = reply else {
                bail!("unexpected reply {reply:?}")
            };
            print(cli.json, serde_json::to_value(&booking)?, || {
                booking_text(&booking)
            });
            Ok(())
        }
        Cmd::Booking {
            command: BookingCmd::Show { id },
        } => {
            let QueryResult::Booking(booking) =
                read(&client, Query::Booking { booking_id: *id }, consistency).await?
            else {
                bail!("unexpected answer to a booking query")
            };
            let booking = booking.map_err(ClientError::Refused)?;
            print(cli.json, serde_json::to_value(&booking)?, || {
                booking_text(&booking)
            });
            Ok(())
        }
        Cmd::Node {
            command: NodeCmd::Add { id, addr },
        } => {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(
                    Usage(format!("{addr:?} is not host:port, e.g. 127.0.0.1:7104")).into(),
                );
            }
            client.add_learner(*id, addr, true).await?;
            let change = client.promote(*id).await?;
            print(cli.json, serde_json::to_value(&change)?, || {
                format!(
                    "node {id} at {addr} added as a voter (log index {})\n{}",
                    change.log_index,
                    members_text(&change.members)
                )
            });
            Ok(())
        }
        Cmd::Node {
            command: NodeCmd::Remove { id },
        } => {
            let change = client.remove_node(*id).await?;
            print(cli.json, serde_json::to_value(&change)?, || {
                format!(
                    "node {id} removed (log index {})\n{}",
                    change.log_index,
                    members_text(&change.members)
                )
            });
            Ok(())
        }
        Cmd::Snapshot => snapshot(&client, cli.json).await,
    }
}

/// Every write of bookctl: a first send of new ids (a one-shot CLI never
/// resends), the store's refusal as [`ClientError::Refused`] (exit 1).
async fn write(client: &Client, command: Command) -> Result<Reply, ClientError> {
    client.submit(Ids::New, command).await?.into_reply()
}

async fn read(
    client: &Client,
    query: Query,
    consistency: Consistency,
) -> Result<QueryResult, ClientError> {
    Ok(client.read(query, consistency).await?.0)
}

fn print(json_mode: bool, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json_mode {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("a JSON value always serialises")
        );
    } else {
        println!("{}", human());
    }
}

// ----- status ---------------------------------------------------------------

/// One row of the status table: a member (or an endpoint that answered
/// without being a member).
struct Row {
    id: Option<u64>,
    addr: String,
    voter: Option<bool>,
    status: Result<NodeStatus, String>,
}

async fn status(client: &Client, json_mode: bool) -> anyhow::Result<()> {
    let cluster: ClusterStatus = client.status().await;
    let answered: Vec<&NodeStatus> = cluster
        .endpoints
        .iter()
        .filter_map(|e| e.status.as_ref().ok())
        .collect();
    if answered.is_empty() {
        let errors: Vec<String> = cluster
            .endpoints
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.endpoint,
                    e.status.as_ref().err().map_or("", |s| s.as_str())
                )
            })
            .collect();
        return Err(ClientError::Unavailable {
            attempts: 1,
            last_error: format!("no node answered ({})", errors.join("; ")),
        }
        .into());
    }
    let membership = cluster
        .leader
        .as_ref()
        .or(answered.first().copied())
        .map(|s| s.members.clone())
        .unwrap_or_default();
    let mut rows: Vec<Row> = Vec::new();
    let find = |id: u64| {
        cluster
            .endpoints
            .iter()
            .find(|e| e.status.as_ref().is_ok_and(|s| s.node_id == id))
    };
    for member in &membership {
        let endpoint_status = find(member.node_id)
            .map(|e| e.status.clone())
            .or_else(|| {
                let want = format!("http://{}", member.addr);
                cluster
                    .endpoints
                    .iter()
                    .find(|e| e.endpoint == want)
                    .map(|e| e.status.clone())
            })
            .unwrap_or_else(|| Err("not asked (not among the endpoints)".into()));
        rows.push(Row {
            id: Some(member.node_id),
            addr: member.addr.clone(),
            voter: Some(member.voter),
            status: endpoint_status,
        });
    }
    for endpoint in &cluster.endpoints {
        let known = match &endpoint.status {
            Ok(s) => membership.iter().any(|m| m.node_id == s.node_id),
            Err(_) => membership
                .iter()
                .any(|m| format!("http://{}", m.addr) == endpoint.endpoint),
        };
        if !known {
            rows.push(Row {
                id: endpoint.status.as_ref().ok().map(|s| s.node_id),
                addr: endpoint.endpoint.trim_start_matches("http://").to_string(),
                voter: None,
                status: endpoint.status.clone(),
            });
        }
    }
    let leader = cluster.leader.as_ref();
    let leader_applied = leader.map(|l| l.applied_index);
    let term = leader
        .map(|l| l.term)
        .or_else(|| answered.iter().map(|s| s.term).max());
    if json_mode {
        let members: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| match &r.status {
                Ok(s) => json!({
                    "id": r.id, "addr": r.addr, "voter": r.voter, "reachable": true, "role": s.role,
                    "term": s.term, "applied_index": s.applied_index, "commit_index": s.commit_index,
                    "last_log_index": s.last_log_index, "snapshot_index": s.snapshot_index,
                    "lag": leader_applied.map(|l| l.saturating_sub(s.applied_index)),
                    "state_hash": s.state_hash, "error": null,
                }),
                Err(e) => json!({
                    "id": r.id, "addr": r.addr, "voter": r.voter, "reachable": false, "role": null,
                    "error": e,
                }),
            })
            .collect();
        let value = json!({
            "cluster": answered.first().map(|s| s.cluster_name.clone()),
            "leader": leader.map(|l| l.node_id),
            "leader_addr": leader.map(|l| l.members.iter().find(|m| m.node_id == l.node_id).map(|m| m.addr.clone())),
            "term": term,
            "members": members,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut out = match leader {
        Some(l) => format!(
            "cluster {:?}: leader node {} (term {})\n",
            l.cluster_name, l.node_id, l.term
        ),
        None => format!(
            "cluster: NO LEADER (highest term seen {})\n",
            term.unwrap_or(0)
        ),
    };
    let mut table = vec![vec![
        "NODE".to_string(),
        "ADDR".into(),
        "KIND".into(),
        "ROLE".into(),
        "TERM".into(),
        "APPLIED".into(),
        "COMMIT".into(),
        "LAG".into(),
        "SNAPSHOT".into(),
    ]];
    for r in &rows {
        let id = r.id.map_or("?".to_string(), |i| i.to_string());
        let kind = match r.voter {
            Some(true) => "voter",
            Some(false) => "learner",
            None => "not member",
        }
        .to_string();
        match &r.status {
            Ok(s) => table.push(vec![
                id,
                r.addr.clone(),
                kind,
                s.role.clone(),
                s.term.to_string(),
                s.applied_index.to_string(),
                s.commit_index.to_string(),
                leader_applied.map_or("-".into(), |l| {
                    l.saturating_sub(s.applied_index).to_string()
                }),
                s.snapshot_index.to_string(),
            ]),
            Err(e) => table.push(vec![id, r.addr.clone(), kind, format!("unreachable: {e}")]),
        }
    }
    out.push_str(&render_table(&table));
    println!("{out}");
    Ok(())
}

async fn snapshot(client: &Client, json_mode: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut any_ok = false;
    for endpoint in client.endpoints() {
        let result = client.trigger_snapshot(&endpoint).await;
        any_ok |= result.is_ok();
        results.push((endpoint, result));
    }
    if json_mode {
        let value: Vec<serde_json::Value> = results
            .iter()
            .map(|(endpoint, r)| match r {
                Ok(index) => {
                    json!({ "endpoint": endpoint, "snapshot_index": index, "error": null })
                }
                Err(e) => {
                    json!({ "endpoint": endpoint, "snapshot_index": null, "error": e.to_string() })
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for (endpoint, r) in &results {
            match r {
                Ok(index) => {
                    println!("{endpoint}: snapshot requested (current snapshot index {index})")
                }
                Err(e) => println!("{endpoint}: {e}"),
            }
        }
    }
    if !any_ok {
        return Err(ClientError::Unavailable {
            attempts: 1,
            last_error: "no node accepted the snapshot request".into(),
        }
        .into());
    }
    Ok(())
}

// ----- formatting -----------------------------------------------------------

fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            // The last cell of a short row (an error text) does not widen its column.
            if row.len() == columns || i + 1 < row.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.trim_end().to_string()
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A log-time instant (Unix ms) as its value and its distance from now.
fn when(at_ms: u64) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if at_ms >= now_ms {
        format!("at {at_ms} ms (in {} s)", (at_ms - now_ms) / 1000)
    } else {
        format!("at {at_ms} ms ({} s ago)", (now_ms - at_ms) / 1000)
    }
}

fn events_table(events: &[EventSummary]) -> String {
    if events.is_empty() {
        return "no events".into();
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "NAME".into(),
        "VENUE".into(),
        "STARTS".into(),
        "SALE".into(),
        "AVAILABLE".into(),
        "CAPACITY".into(),
    ]];
    for e in events {
        rows.push(vec![
            e.event_id.clone(),
            e.name.clone(),
            e.venue.clone(),
            e.starts_at.clone(),
            format!("{:?}", e.sale).to_lowercase(),
            e.available.to_string(),
            e.capacity.to_string(),
        ]);
    }
    render_table(&rows)
}

fn event_text(e: &EventView) -> String {
    let mut out = format!(
        "{} ({}) at {}, starts {}\nsale: {}; capacity {}, available {}, held {}, booked {}\nhold ttl {} ms, at most {} seats per hold\n",
        e.spec.name,
        e.spec.id.as_deref().unwrap_or("?"),
        e.spec.venue,
        e.spec.starts_at,
        format!("{:?}", e.sale).to_lowercase(),
        e.capacity,
        e.available,
        e.held,
        e.booked,
        e.spec.hold_ttl_ms,
        e.spec.max_seats_per_hold,
    );
    if let Some(waiting) = e.queue_waiting {
        out.push_str(&format!(
            "waiting room: {waiting} waiting, {} shopping\n",
            e.queue_shopping.unwrap_or(0)
        ));
    }
    for section in &e.spec.sections {
        out.push_str(&format!(
            "  section {} ({}): {} places at {}\n",
            section.id(),
            section.name(),
            section.capacity(),
            money(section.price_cents())
        ));
    }
    out.trim_end().to_string()
}

fn seats_text(v: &AvailabilityView) -> String {
    let mut out = format!(
        "{}: sale {}, as of log index {} (log time {} ms)\nlegend: . available  H held  B booked\n",
        v.event_id,
        format!("{:?}", v.sale).to_lowercase(),
        v.applied_index,
        v.clock_ms
    );
    for s in &v.sections {
        out.push_str(&format!(
            "section {}{} at {}: capacity {}, available {}, held {}, booked {}\n",
            s.section,
            if s.general_admission {
                " (general admission)"
            } else {
                ""
            },
            money(s.price_cents),
            s.capacity,
            s.available,
            s.held,
            s.booked
        ));
        let width = s.rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
        for row in &s.rows {
            out.push_str(&format!("  {:>width$}  {}\n", row.label, row.states));
        }
    }
    out.trim_end().to_string()
}

fn booking_text(b: &BookingView) -> String {
    let what = match &b.general_admission {
        Some(ga) => format!("{} general admission place(s) in {}", ga.count, ga.section),
        None => b.seats.join(", "),
    };
    let mut out = format!(
        "booking {} ({:?}) for {} on {}: {what}\nhold {}, payment {}, total {}\n",
        b.booking_id,
        b.status,
        b.holder,
        b.event_id,
        b.hold_id,
        b.payment_ref,
        money(b.total_cents)
    );
    for t in &b.tickets {
        let state = if t.revoked {
            "revoked".to_string()
        } else if let Some(at) = t.checked_in_at_ms {
            format!("checked in at {at}")
        } else {
            "valid".to_string()
        };
        out.push_str(&format!(
            "  ticket {} seat {} {state}\n",
            t.ticket_id, t.seat
        ));
    }
    out.trim_end().to_string()
}

fn members_text(members: &[client::Member]) -> String {
    let mut rows = vec![vec!["NODE".to_string(), "ADDR".into(), "KIND".into()]];
    for m in members {
        rows.push(vec![
            m.node_id.to_string(),
            m.addr.clone(),
            if m.voter { "voter" } else { "learner" }.into(),
        ]);
    }
    render_table(&rows)
}
