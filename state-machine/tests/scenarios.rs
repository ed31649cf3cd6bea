//! Runs every data-driven scenario in `tests/scenarios/*.txt` (format in
//! `tests/scenarios/README.md`) and fails with a readable expected/actual
//! listing of every mismatch in every file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use state_machine::*;

struct Runner {
    state: BookingState,
    index: u64,
    clients: BTreeMap<String, u64>,
    last_changes: Vec<SeatChange>,
    failures: Vec<String>,
    file: String,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn kv<'a>(tokens: &[&'a str], key: &str) -> Option<&'a str> {
    tokens
        .iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl Runner {
    fn client_id(&mut self, name: &str) -> u64 {
        if name == "leader" {
            return 0;
        }
        let next = self.clients.len() as u64 + 1;
        *self.clients.entry(name.to_string()).or_insert(next)
    }

    /// `<client>/<req> <command...>` → a request.
    fn request(&mut self, text: &str) -> Result<Request, String> {
        let mut parts = text.split_whitespace();
        let who = parts.next().ok_or("missing client/request")?;
        let (client, req) = who
            .split_once('/')
            .ok_or_else(|| format!("expected client/request, got {who:?}"))?;
        let request_id = parse_u64(req)?;
        let client_id = self.client_id(client);
        let verb = parts.next().ok_or("missing command")?;
        let rest_str = text
            .splitn(3, char::is_whitespace)
            .nth(2)
            .unwrap_or("")
            .trim();
        let args: Vec<&str> = parts.collect();
        let arg = |i: usize| {
            args.get(i)
                .copied()
                .ok_or_else(|| format!("{verb}: missing argument {}", i + 1))
        };
        let num = |i: usize| arg(i).and_then(parse_u64);
        let holder = client.to_string();
        let command = match verb {
            "create" => Command::CreateEvent(
                serde_json::from_str(rest_str).map_err(|e| format!("create: {e}"))?,
            ),
            "create-std" => {
                let get = |k: &str, d: u64| kv(&args, k).map(parse_u64).unwrap_or(Ok(d));
                let mut spec = std_spec(
                    arg(0)?,
                    get("rows", 3)? as u32,
                    get("seats", 10)? as u32,
                    get("ga", 5)? as u32,
                    get("ttl", 10_000)?,
                );
                spec.max_seats_per_hold = get("max", 8)? as u32;
                if let Some(b) = kv(&args, "queue") {
                    spec.waiting_room = Some(WaitingRoomSpec {
                        enabled: true,
                        admit_batch: parse_u64(b)? as u32,
                    });
                }
                spec.sale_opens_at = kv(&args, "opens").map(String::from);
                Command::CreateEvent(spec)
            }
            "open" => Command::OpenSale {
                event_id: arg(0)?.into(),
            },
            "close" => Command::CloseSale {
                event_id: arg(0)?.into(),
            },
            "hold" => Command::Hold {
                event_id: arg(0)?.into(),
                holder,
                selection: Selection::Seats(args[1..].iter().map(|s| s.to_string()).collect()),
            },
            "best" => Command::Hold {
                event_id: arg(0)?.into(),
                holder,
                selection: Selection::BestAvailable {
                    count: num(1)? as u32,
                    section: kv(&args, "section").map(String::from),
                    allow_non_adjacent: args.contains(&"any"),
                },
            },
            "ga" => Command::Hold {
                event_id: arg(0)?.into(),
                holder,
                selection: Selection::GeneralAdmission {
                    section: arg(1)?.into(),
                    count: num(2)? as u32,
                },
            },
            "extend" => Command::ExtendHold {
                hold_id: num(0)?,
                holder,
            },
            "release" => Command::Release {
                hold_id: num(0)?,
                holder,
            },
            "pay" => Command::BeginPayment {
                hold_id: num(0)?,
                holder,
            },
            "confirm" => Command::Confirm {
                hold_id: num(0)?,
                holder,
                payment_ref: arg(1)?.into(),
            },
            "fail" => Command::FailPayment {
                hold_id: num(0)?,
                holder,
            },
            "cancel" => Command::CancelBooking {
                booking_id: num(0)?,
                holder,
            },
            "checkin" => Command::CheckIn { ticket_id: num(0)? },
            "join" => Command::JoinQueue {
                event_id: arg(0)?.into(),
                user: holder,
            },
            "leave" => Command::LeaveQueue {
                event_id: arg(0)?.into(),
                user: holder,
            },
            "webhook" => Command::RecordWebhook {
                webhook_id: arg(0)?.into(),
            },
            "ack" => Command::AckOutbox { up_to: num(0)? },
            "configure" => Command::Configure(
                serde_json::from_str(rest_str).map_err(|e| format!("configure: {e}"))?,
            ),
            "tick" => Command::Tick,
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(Request {
            client_id,
            request_id,
            command,
        })
    }

    fn fail(&mut self, line: usize, source: &str, expected: &str, actual: &str) {
        self.failures.push(format!(
            "{}:{line}: {source}\n    expected: {expected}\n    actual:   {actual}",
            self.file
        ));
    }

    /// Expected tokens must match: the first two exactly, the rest must each
    /// appear among the actual tokens.
    fn compare(&mut self, line: usize, source: &str, expected: &str, actual: &str) {
        let exp: Vec<&str> = expected.split_whitespace().collect();
        let act: Vec<&str> = actual.split_whitespace().collect();
        let ok = !exp.is_empty()
            && exp.iter().take(2).zip(act.iter()).all(|(e, a)| e == a)
            && act.len() >= exp.len().min(2)
            && exp.iter().skip(2).all(|e| act.contains(e));
        if !ok {
            self.fail(line, source, expected, actual);
        }
    }

    fn run_entry(&mut self, line: usize, stamp_ms: u64, items: Vec<(usize, String, String)>) {
        let mut requests = Vec::new();
        for (l, text, _) in &items {
            match self.request(text) {
                Ok(r) => requests.push(r),
                Err(e) => {
                    self.failures
                        .push(format!("{}:{l}: bad step: {e}", self.file));
                    return;
                }
            }
        }
        self.index += 1;
        let batch = Batch { stamp_ms, requests };
        let out = self.state.apply(self.index, &batch);
        if let Err(e) = self.state.check_invariants() {
            self.failures
                .push(format!("{}:{line}: invariant broken: {e}", self.file));
        }
        for ((l, text, expected), outcome) in items.iter().zip(&out.outcomes) {
            let actual = render_outcome(outcome);
            self.compare(*l, text, expected, &actual);
        }
        self.last_changes = out.changes;
    }

    fn check(&mut self, line: usize, text: &str, what: &str, expected: &str) {
        let args: Vec<&str> = what.split_whitespace().collect();
        let actual = match args.as_slice() {
            ["hold", id] => match self.state.query(&Query::Hold {
                hold_id: id.parse().unwrap_or(0),
            }) {
                QueryResult::Hold(Ok(h)) => format!(
                    "status={} expires={} seats={}",
                    h.status.as_str(),
                    h.expires_at_ms,
                    if h.seats.is_empty() {
                        "-".into()
                    } else {
                        h.seats.join(",")
                    }
                ),
                QueryResult::Hold(Err(e)) => format!("err {}", e.code()),
                other => format!("{other:?}"),
            },
            ["booking", id] => match self.state.query(&Query::Booking {
                booking_id: id.parse().unwrap_or(0),
            }) {
                QueryResult::Booking(Ok(b)) => format!(
                    "status={} holder={} seats={} tickets={}",
                    serde_json::to_value(b.status).unwrap().as_str().unwrap(),
                    b.holder,
                    if b.seats.is_empty() {
                        "-".into()
                    } else {
                        b.seats.join(",")
                    },
                    b.tickets
                        .iter()
                        .map(|t| t.ticket_id.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                QueryResult::Booking(Err(e)) => format!("err {}", e.code()),
                other => format!("{other:?}"),
            },
            ["ticket", id] => match self.state.query(&Query::Ticket {
                ticket_id: id.parse().unwrap_or(0),
            }) {
                QueryResult::Ticket(Ok(t)) => format!(
                    "seat={} revoked={} checked_in={}",
                    t.seat,
                    t.revoked,
                    t.checked_in_at_ms
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "none".into())
                ),
                QueryResult::Ticket(Err(e)) => format!("err {}", e.code()),
                other => format!("{other:?}"),
            },
            ["queue", ev, user] => match self.state.query(&Query::QueuePosition {
                event_id: ev.to_string(),
                user: user.to_string(),
            }) {
                QueryResult::QueuePosition(Ok(q)) => render_queue(&q),
                QueryResult::QueuePosition(Err(e)) => format!("err {}", e.code()),
                other => format!("{other:?}"),
            },
            ["seats", ev, row] | ["ga", ev, row] => match self.state.query(&Query::Availability {
                event_id: ev.to_string(),
            }) {
                QueryResult::Availability(Ok(a)) => {
                    let (section, label) = row.split_once('-').unwrap_or((row, ""));
                    match a.sections.iter().find(|s| s.section == section) {
                        Some(s) if args[0] == "ga" => format!(
                            "available={} held={} sold={}",
                            s.available, s.held, s.booked
                        ),
                        Some(s) => s
                            .rows
                            .iter()
                            .find(|r| r.label == label)
                            .map(|r| r.states.clone())
                            .unwrap_or_else(|| "no such row".into()),
                        None => "no such section".into(),
                    }
                }
                QueryResult::Availability(Err(e)) => format!("err {}", e.code()),
                other => format!("{other:?}"),
            },
            ["clock"] => self.state.clock_ms().to_string(),
            ["deadline"] => self
                .state
                .next_deadline_ms()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "none".into()),
            ["changes"] => {
                let v: Vec<String> = self.last_changes.iter().map(render_change).collect();
                if v.is_empty() {
                    "none".into()
                } else {
                    v.join(" ")
                }
            }
            ["outbox"] => match self.state.query(&Query::Outbox { limit: 100 }) {
                QueryResult::Outbox(m) if m.is_empty() => "empty".into(),
                QueryResult::Outbox(m) => m
                    .iter()
                    .map(|m| {
                        format!(
                            "{}:{}:{}",
                            m.id,
                            serde_json::to_value(&m.kind).unwrap().as_str().unwrap(),
                            m.booking_id
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => format!("{other:?}"),
            },
            _ => {
                self.failures
                    .push(format!("{}:{line}: unknown check {what:?}", self.file));
                return;
            }
        };
        // Seat rows, changes and outbox compare whole; the others by tokens.
        if matches!(
            args.first(),
            Some(&"seats")
                | Some(&"changes")
                | Some(&"outbox")
                | Some(&"clock")
                | Some(&"deadline")
        ) {
            if actual != expected {
                self.fail(line, text, expected, &actual);
            }
        } else {
            let act: Vec<&str> = actual.split_whitespace().collect();
            if !expected.split_whitespace().all(|e| act.contains(&e)) {
                self.fail(line, text, expected, &actual);
            }
        }
    }

    fn restore(&mut self, line: usize) {
        let bytes = self.state.snapshot();
        match BookingState::restore(&bytes) {
            Ok(restored) => {
                if restored.state_hash() != self.state.state_hash() || restored != self.state {
                    self.failures
                        .push(format!("{}:{line}: restored state differs", self.file));
                }
                self.state = restored;
            }
            Err(e) => self
                .failures
                .push(format!("{}:{line}: restore failed: {e}", self.file)),
        }
    }
}

fn run_file(path: &Path) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let mut runner = Runner {
        state: BookingState::new(),
        index: 0,
        clients: BTreeMap::new(),
        last_changes: Vec::new(),
        failures: Vec::new(),
        file: path.file_name().unwrap().to_string_lossy().into_owned(),
    };
    let lines: Vec<&str> = text.lines().collect();
    if !lines.first().is_some_and(|l| l.starts_with("# ")) {
        runner.failures.push(format!(
            "{}: the first line must be a `# goal` comment",
            runner.file
        ));
    }
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line_no = i + 1;
        i += 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let split_expect = |s: &str| -> (String, String) {
            match s.split_once("=>") {
                Some((a, b)) => (a.trim().to_string(), b.trim().to_string()),
                None => (s.trim().to_string(), String::new()),
            }
        };
        if let Some(rest) = line.strip_prefix("at ") {
            let (stamp, step) = rest.split_once(' ').unwrap_or((rest, ""));
            let (text, expected) = split_expect(step);
            match parse_u64(stamp) {
                Ok(stamp) => runner.run_entry(line_no, stamp, vec![(line_no, text, expected)]),
                Err(e) => runner
                    .failures
                    .push(format!("{}:{line_no}: {e}", runner.file)),
            }
        } else if let Some(stamp) = line.strip_prefix("batch ") {
            let mut items = Vec::new();
            while i < lines.len()
                && lines[i].starts_with(char::is_whitespace)
                && !lines[i].trim().is_empty()
            {
                let (text, expected) = split_expect(lines[i].trim());
                items.push((i + 1, text, expected));
                i += 1;
            }
            match parse_u64(stamp.trim()) {
                Ok(stamp) => runner.run_entry(line_no, stamp, items),
                Err(e) => runner
                    .failures
                    .push(format!("{}:{line_no}: {e}", runner.file)),
            }
        } else if let Some(rest) = line.strip_prefix("check ") {
            let (what, expected) = split_expect(rest);
            runner.check(line_no, line, &what, &expected);
        } else if line == "restore" {
            runner.restore(line_no);
        } else {
            runner.failures.push(format!(
                "{}:{line_no}: cannot read step {line:?}",
                runner.file
            ));
        }
    }
    if runner.failures.is_empty() {
        Ok(())
    } else {
        Err(runner.failures)
    }
}

#[test]
fn scenario_files() {
    // Goal: every scenario file's steps produce the expected outcomes and states.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenario dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 25,
        "expected at least 25 scenarios, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        if let Err(mut e) = run_file(f) {
            failures.append(&mut e);
        }
    }
    println!(
        "{} scenario files, {} failures",
        files.len(),
        failures.len()
    );
    if !failures.is_empty() {
        panic!("\n{}\n", failures.join("\n"));
    }
}
