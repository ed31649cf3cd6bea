//! Goal: every scenario goldenscript in `tests/scenarios/*.txt` (format in
//! `tests/scenarios/README.md`) prints exactly what the file says.
//!
//! Each step prints its whole result (outcomes in `Debug` form, seat changes,
//! remembered indexes, query answers), and the file rebuilt from its steps
//! and the printed output must equal the file. A new field in an outcome or a
//! view therefore shows up as a diff. `UPDATE_SCENARIOS=1` rewrites the files
//! with the actual output instead of failing: review the diff before
//! committing it. Broken invariants, failed restores and unreadable steps fail
//! in both modes.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use common::*;
use state_machine::*;

/// The environment variable that turns comparing into rewriting.
const UPDATE_ENV: &str = "UPDATE_SCENARIOS";

/// A line of a scenario file that is not part of a block: a comment or blank.
/// Blocks are the steps, `---`, and the output those steps printed.
enum Piece {
    Text(String),
    Block {
        /// 1-based line of the block's first step.
        line: usize,
        /// The step lines as written (a `batch` keeps its indented lines).
        input: Vec<String>,
        /// The output lines the file expects.
        expected: Vec<String>,
    },
}

/// One step of a block.
enum Step {
    /// One log entry: `at` (one request) or `batch` (several).
    Entry {
        stamp_ms: u64,
        /// `<client>/<request_id> <command...>` of each request.
        requests: Vec<String>,
        batch: bool,
    },
    Check(String),
    Restore,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn kv<'a>(tokens: &[&'a str], key: &str) -> Option<&'a str> {
    tokens
        .iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Splits a file into comments and blocks.
fn parse_file(text: &str) -> Result<Vec<Piece>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            pieces.push(Piece::Text(line.to_string()));
            i += 1;
            continue;
        }
        let first = i + 1;
        let mut input = Vec::new();
        while i < lines.len() && lines[i] != "---" {
            if lines[i].trim().is_empty() || lines[i].starts_with('#') {
                return Err(format!(
                    "{first}: the block starting here has no `---` before line {}",
                    i + 1
                ));
            }
            input.push(lines[i].to_string());
            i += 1;
        }
        if i == lines.len() {
            return Err(format!(
                "{first}: the block starting here has no `---` line"
            ));
        }
        i += 1;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i].to_string());
            i += 1;
        }
        pieces.push(Piece::Block {
            line: first,
            input,
            expected,
        });
    }
    Ok(pieces)
}

/// The steps of a block's input lines (`line` is the first one's number).
fn parse_steps(line: usize, input: &[String]) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let at = line + i;
        let text = input[i].as_str();
        i += 1;
        if text.starts_with(char::is_whitespace) {
            return Err(format!("{at}: indented line outside a batch"));
        }
        if let Some(rest) = text.strip_prefix("at ") {
            let (stamp, request) = rest.split_once(' ').unwrap_or((rest, ""));
            steps.push(Step::Entry {
                stamp_ms: parse_u64(stamp).map_err(|e| format!("{at}: {e}"))?,
                requests: vec![request.trim().to_string()],
                batch: false,
            });
        } else if let Some(stamp) = text.strip_prefix("batch ") {
            let mut requests = Vec::new();
            while i < input.len() && input[i].starts_with(char::is_whitespace) {
                requests.push(input[i].trim().to_string());
                i += 1;
            }
            steps.push(Step::Entry {
                stamp_ms: parse_u64(stamp.trim()).map_err(|e| format!("{at}: {e}"))?,
                requests,
                batch: true,
            });
        } else if let Some(what) = text.strip_prefix("check ") {
            steps.push(Step::Check(what.trim().to_string()));
        } else if text == "restore" {
            steps.push(Step::Restore);
        } else {
            return Err(format!("{at}: cannot read step {text:?}"));
        }
    }
    Ok(steps)
}

/// `ok <value:?>` or `err <error:?>`.
fn result_line<T: Debug>(result: &Result<T, BookingError>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(error) => format!("err {error:?}"),
    }
}

struct Runner {
    state: BookingState,
    /// Log index of the last applied entry: entries are 1, 2, 3, ...
    index: u64,
    /// Client name → client id, in order of first use (`leader` is 0).
    clients: BTreeMap<String, u64>,
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
            // `qhold EV POSITION SEAT...`: a hold presenting a queue token's position.
            "qhold" => Command::HoldQueued {
                event_id: arg(0)?.into(),
                holder,
                queue_position: num(1)?,
                selection: Selection::Seats(args[2..].iter().map(|s| s.to_string()).collect()),
            },
            "block" => Command::ReserveQueueBlock {
                event_id: arg(0)?.into(),
                count: num(1)? as u32,
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
            "forget" => Command::ForgetRequests { before_ms: num(0)? },
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(Request {
            client_id,
            request_id,
            command,
        })
    }

    /// Runs one step and returns what it printed. `Err` is a failure that
    /// rewriting must not paper over (a bad step, a broken invariant).
    fn run(&mut self, step: &Step) -> Result<Vec<String>, String> {
        match step {
            Step::Entry {
                stamp_ms,
                requests,
                batch,
            } => self.entry(*stamp_ms, requests, *batch),
            Step::Check(what) => self.check(what),
            Step::Restore => self.restore(),
        }
    }

    /// Applies one entry. Prints one line per request (prefixed with its
    /// `client/request` in a batch), ` (first applied at index N)` for an
    /// outcome remembered from an earlier entry, then one `change` line per
    /// seat change, in apply order.
    fn entry(
        &mut self,
        stamp_ms: u64,
        texts: &[String],
        batch: bool,
    ) -> Result<Vec<String>, String> {
        let requests = texts
            .iter()
            .map(|t| self.request(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.index += 1;
        // Destructured so that a new field of `ApplyOutput` fails to compile
        // here until it is printed.
        let ApplyOutput {
            outcomes,
            indexes,
            changes,
        } = self.state.apply(self.index, &Batch { stamp_ms, requests });
        self.state
            .check_invariants()
            .map_err(|e| format!("invariant broken after entry {}: {e}", self.index))?;
        assert_eq!(outcomes.len(), texts.len(), "one outcome per request");
        assert_eq!(indexes.len(), texts.len(), "one index per request");
        let mut out = Vec::new();
        for ((text, outcome), index) in texts.iter().zip(&outcomes).zip(indexes) {
            let mut line = String::new();
            if batch {
                let label = text.split_whitespace().next().unwrap_or_default();
                line.push_str(&format!("{label}: "));
            }
            line.push_str(&result_line(outcome));
            if index != self.index {
                line.push_str(&format!(" (first applied at index {index})"));
            }
            out.push(line);
        }
        for change in changes {
            let SeatChange {
                event_id,
                seat,
                state,
            } = change;
            out.push(format!("change {event_id} {seat} {state:?}"));
        }
        Ok(out)
    }

    /// Answers a `check`: the whole query result, in `Debug` form.
    fn check(&mut self, what: &str) -> Result<Vec<String>, String> {
        let id = |s: &str| parse_u64(s);
        let args: Vec<&str> = what.split_whitespace().collect();
        let line = match args.as_slice() {
            ["hold", h] => match self.state.query(&Query::Hold { hold_id: id(h)? }) {
                QueryResult::Hold(r) => result_line(&r),
                other => panic!("hold query answered {other:?}"),
            },
            ["booking", b] => match self.state.query(&Query::Booking { booking_id: id(b)? }) {
                QueryResult::Booking(r) => result_line(&r),
                other => panic!("booking query answered {other:?}"),
            },
            ["ticket", t] => match self.state.query(&Query::Ticket { ticket_id: id(t)? }) {
                QueryResult::Ticket(r) => result_line(&r),
                other => panic!("ticket query answered {other:?}"),
            },
            // Where the token (user, position) stands, computed from the
            // room's view as a gateway does.
            ["queue", ev, _user, position] => match self.state.query(&Query::WaitingRoom {
                event_id: ev.to_string(),
            }) {
                QueryResult::WaitingRoom(r) => result_line(
                    &r.map(|view| state_machine::fan_place(&view, id(position).unwrap_or(0))),
                ),
                other => panic!("waiting room query answered {other:?}"),
            },
            ["room", ev] => match self.state.query(&Query::WaitingRoom {
                event_id: ev.to_string(),
            }) {
                QueryResult::WaitingRoom(r) => result_line(&r),
                other => panic!("waiting room query answered {other:?}"),
            },
            // One row of the seat map: `.` available, `H` held, `B` booked.
            ["seats", ev, row] => match self.availability(ev)? {
                Err(e) => result_line::<()>(&Err(e)),
                Ok(a) => {
                    let (section, label) = row.split_once('-').ok_or("seats: want SECTION-ROW")?;
                    a.sections
                        .iter()
                        .find(|s| s.section == section)
                        .and_then(|s| s.rows.iter().find(|r| r.label == label))
                        .map(|r| r.states.clone())
                        .ok_or_else(|| format!("seats: no row {row}"))?
                }
            },
            ["ga", ev, section] => match self.availability(ev)? {
                Err(e) => result_line::<()>(&Err(e)),
                Ok(a) => {
                    let s = a
                        .sections
                        .into_iter()
                        .find(|s| s.section == *section)
                        .ok_or_else(|| format!("ga: no section {section}"))?;
                    format!("ok {s:?}")
                }
            },
            ["clock"] => self.state.clock_ms().to_string(),
            ["remembered"] => self.state.remembered_requests().to_string(),
            ["deadline"] => format!("{:?}", self.state.next_deadline_ms()),
            ["outbox"] => match self.state.query(&Query::Outbox { limit: 100 }) {
                QueryResult::Outbox(messages) if messages.is_empty() => "empty".into(),
                QueryResult::Outbox(messages) => {
                    return Ok(messages.iter().map(|m| format!("{m:?}")).collect())
                }
                other => panic!("outbox query answered {other:?}"),
            },
            _ => return Err(format!("unknown check {what:?}")),
        };
        Ok(vec![line])
    }

    fn availability(
        &self,
        event_id: &str,
    ) -> Result<Result<AvailabilityView, BookingError>, String> {
        match self.state.query(&Query::Availability {
            event_id: event_id.to_string(),
        }) {
            QueryResult::Availability(r) => Ok(r),
            other => Err(format!("availability query answered {other:?}")),
        }
    }

    /// Snapshot, restore, and continue from the copy. Prints the snapshot's
    /// size and the start of the state hash, so a change of the snapshot
    /// format or of the replicated state shows up as a diff.
    fn restore(&mut self) -> Result<Vec<String>, String> {
        let bytes = self.state.snapshot();
        let restored = BookingState::restore(&bytes).map_err(|e| format!("restore failed: {e}"))?;
        let hash = restored.state_hash();
        if hash != self.state.state_hash() || restored != self.state {
            return Err("the restored state differs from the original".into());
        }
        self.state = restored;
        let hash: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(vec![format!(
            "restored applied_index={} snapshot_bytes={} state_hash={hash}",
            self.state.applied_index(),
            bytes.len()
        )])
    }
}

/// What checking one file found.
struct FileReport {
    /// The file as the actual output would write it.
    actual: String,
    /// Blocks whose output differs, as readable expected/actual listings.
    diffs: Vec<String>,
    /// Failures rewriting cannot fix.
    errors: Vec<String>,
}

fn run_file(path: &Path) -> FileReport {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).expect("read scenario");
    let mut report = FileReport {
        actual: String::new(),
        diffs: Vec::new(),
        errors: Vec::new(),
    };
    if !text.starts_with("# ") {
        report
            .errors
            .push(format!("{name}: the first line must be a `# goal` comment"));
    }
    let pieces = match parse_file(&text) {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("{name}:{e}"));
            return report;
        }
    };
    let mut runner = Runner {
        state: BookingState::new(),
        index: 0,
        clients: BTreeMap::new(),
    };
    let mut lines: Vec<String> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => lines.push(t),
            Piece::Block {
                line,
                input,
                expected,
            } => {
                let mut actual = Vec::new();
                match parse_steps(line, &input) {
                    Ok(steps) => {
                        for step in &steps {
                            match runner.run(step) {
                                Ok(mut out) => actual.append(&mut out),
                                Err(e) => report.errors.push(format!("{name}:{line}: {e}")),
                            }
                        }
                    }
                    Err(e) => report.errors.push(format!("{name}:{e}")),
                }
                if actual != expected {
                    let indent = |v: &[String]| -> String {
                        v.iter().map(|l| format!("\n        {l}")).collect()
                    };
                    report.diffs.push(format!(
                        "{name}:{line}: {}\n    expected:{}\n    actual:{}",
                        input.join(" / "),
                        indent(&expected),
                        indent(&actual)
                    ));
                }
                lines.extend(input);
                lines.push("---".into());
                lines.extend(actual);
            }
        }
    }
    report.actual = lines.join("\n") + "\n";
    if report.diffs.is_empty() && report.actual != text {
        report.diffs.push(format!(
            "{name}: the outputs match but the file's layout differs (trailing blank lines?)"
        ));
    }
    report
}

#[test]
fn scenario_files() {
    let update = std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1");
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
    let mut diffs = Vec::new();
    let mut errors = Vec::new();
    let mut rewritten = Vec::new();
    for f in &files {
        let mut report = run_file(f);
        if update && !report.diffs.is_empty() && report.errors.is_empty() {
            std::fs::write(f, &report.actual).expect("rewrite scenario");
            rewritten.push(f.file_name().unwrap().to_string_lossy().into_owned());
        } else {
            diffs.append(&mut report.diffs);
        }
        errors.append(&mut report.errors);
    }
    println!(
        "{} scenario files, {} differing blocks, {} errors, {} rewritten",
        files.len(),
        diffs.len(),
        errors.len(),
        rewritten.len()
    );
    for f in &rewritten {
        println!("rewrote {f}: review the diff");
    }
    if !errors.is_empty() || !diffs.is_empty() {
        let listing: Vec<String> = errors.into_iter().chain(diffs).collect();
        panic!(
            "\n{}\n(set {UPDATE_ENV}=1 to rewrite the expected output; errors are never rewritten)\n",
            listing.join("\n")
        );
    }
}
