//! The operation history: what every workload records and every checker reads.
//!
//! Owns: the event (`invoke`, `ok`, `fail`, `info`), its JSON-lines form
//! (`history.jsonl`) and the pairing of each invoke with its completion into an
//! [`Operation`].
//!
//! Semantics, as in Jepsen:
//! - `ok`: the operation happened, between its invoke and its completion;
//! - `fail`: it certainly did not happen (its value may still say *why*, e.g. a
//!   state-machine refusal code, which some models read as an observation);
//! - `info`: unknown. It stays open until the end of the history and may take
//!   effect at any point after its invoke, or never. An invoke with no
//!   completion at all (the history ended first) is treated the same way.
//!
//! Times come from one monotonic clock in the harness (`time_ns`). Invoke is
//! recorded before the request leaves and the completion after the reply
//! arrives, so the real effect lies inside `[invoke, completion]`.
//!
//! Must not: interpret values. `f` and `value` are generic; each model decodes
//! its own. Caveat: a process is sequential: it may not invoke while its
//! previous operation is still open, except that `info` closes it (Jepsen
//! usually retires the process then; we allow reuse, since the `info`
//! operation stays open in the checker regardless).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which of the four events a history line records.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of `history.jsonl`, e.g.
/// `{"process":3,"type":"invoke","f":"cas","value":[1,2],"time_ns":1200}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event<F, V> {
    /// The client thread (logical process) that issued the operation.
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The function: read, write, cas, hold, confirm, release, ...
    pub f: F,
    /// Arguments on invoke; the result (or refusal) on completion.
    pub value: V,
    /// Harness monotonic clock, nanoseconds since the run started.
    pub time_ns: u64,
    /// The server's Raft log index for a completion, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion<V> {
    /// `Ok`, `Fail` or `Info`, never `Invoke`.
    pub kind: EventType,
    pub value: V,
    pub time_ns: u64,
    pub index: Option<u64>,
    /// Position of the completion event in the input.
    pub event: usize,
}

/// An invoke paired with its completion (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct Operation<F, V> {
    /// Position in the paired history (invoke order); stable id for reports.
    pub id: usize,
    pub process: u64,
    pub f: F,
    /// The invoke's value: the arguments.
    pub value: V,
    pub invoke_ns: u64,
    /// Position of the invoke event in the input.
    pub invoke_event: usize,
    /// `None` when the history ended before the operation completed.
    pub completion: Option<Completion<V>>,
}

impl<F, V> Operation<F, V> {
    /// It certainly happened.
    pub fn is_ok(&self) -> bool {
        matches!(&self.completion, Some(c) if c.kind == EventType::Ok)
    }

    /// It certainly did not happen.
    pub fn is_fail(&self) -> bool {
        matches!(&self.completion, Some(c) if c.kind == EventType::Fail)
    }

    /// It may have happened at any point after its invoke, or never.
    pub fn is_unknown(&self) -> bool {
        !self.is_ok() && !self.is_fail()
    }

    /// The log index the server reported with the completion, if any.
    pub fn index(&self) -> Option<u64> {
        self.completion.as_ref().and_then(|c| c.index)
    }

    /// The completion time if the outcome is known; `None` means +infinity.
    pub fn known_return_ns(&self) -> Option<u64> {
        if self.is_unknown() {
            None
        } else {
            self.completion.as_ref().map(|c| c.time_ns)
        }
    }
}

/// Pairs each invoke with the next completion of the same process.
///
/// Errors (the history is malformed, and no verdict on it can be trusted): a
/// completion with no open invoke, an invoke while the process still has an
/// open operation, a completion whose `f` differs from its invoke, a
/// completion timed before its invoke.
pub fn pair<F, V>(events: Vec<Event<F, V>>) -> Result<Vec<Operation<F, V>>>
where
    F: PartialEq + std::fmt::Debug,
{
    let mut ops: Vec<Operation<F, V>> = Vec::new();
    // Process -> index in `ops` of its open operation.
    let mut open: HashMap<u64, usize> = HashMap::new();
    for (event, e) in events.into_iter().enumerate() {
        let bad = |reason: String| Error::History {
            event,
            process: e.process,
            reason,
        };
        match e.kind {
            EventType::Invoke => {
                if let Some(&prev) = open.get(&e.process) {
                    return Err(bad(format!(
                        "invoke while the operation invoked at event {} is still open",
                        ops[prev].invoke_event
                    )));
                }
                open.insert(e.process, ops.len());
                ops.push(Operation {
                    id: ops.len(),
                    process: e.process,
                    f: e.f,
                    value: e.value,
                    invoke_ns: e.time_ns,
                    invoke_event: event,
                    completion: None,
                });
            }
            kind => {
                let Some(i) = open.remove(&e.process) else {
                    return Err(bad(format!("{kind:?} without an open invoke")));
                };
                let op = &mut ops[i];
                if op.f != e.f {
                    return Err(bad(format!(
                        "completion f {:?} does not match invoke f {:?}",
                        e.f, op.f
                    )));
                }
                if e.time_ns < op.invoke_ns {
                    return Err(bad(format!(
                        "completes at {} ns, before its invoke at {} ns",
                        e.time_ns, op.invoke_ns
                    )));
                }
                op.completion = Some(Completion {
                    kind,
                    value: e.value,
                    time_ns: e.time_ns,
                    index: e.index,
                    event,
                });
            }
        }
    }
    Ok(ops)
}

/// Reads a JSON-lines history; blank lines are skipped.
pub fn read_jsonl<F, V>(reader: impl BufRead) -> Result<Vec<Event<F, V>>>
where
    F: DeserializeOwned,
    V: DeserializeOwned,
{
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| Error::Io {
            path: "<history>".into(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|source| Error::Json {
            line: i + 1,
            source,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads `history.jsonl` from a file.
pub fn read_jsonl_file<F, V>(path: &Path) -> Result<Vec<Event<F, V>>>
where
    F: DeserializeOwned,
    V: DeserializeOwned,
{
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    read_jsonl(std::io::BufReader::new(file)).map_err(|e| match e {
        Error::Io { source, .. } => Error::Io {
            path: path.to_owned(),
            source,
        },
        other => other,
    })
}

/// Writes events as JSON lines, one event a line, in the order given.
pub fn write_jsonl<F, V>(mut writer: impl Write, events: &[Event<F, V>]) -> std::io::Result<()>
where
    F: Serialize,
    V: Serialize,
{
    for e in events {
        serde_json::to_writer(&mut writer, e)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ev(
        process: u64,
        kind: EventType,
        f: &str,
        value: Value,
        time_ns: u64,
    ) -> Event<String, Value> {
        Event {
            process,
            kind,
            f: f.to_owned(),
            value,
            time_ns,
            index: None,
        }
    }

    #[test]
    fn jsonl_round_trips_and_uses_the_documented_field_names() {
        // Goal: the on-disk shape is exactly the documented one, and reads back equal.
        let mut events = vec![
            ev(1, EventType::Invoke, "cas", json!([1, 2]), 10),
            ev(1, EventType::Ok, "cas", json!([1, 2]), 20),
        ];
        events[1].index = Some(7);
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &events).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            json!({"process":1,"type":"invoke","f":"cas","value":[1,2],"time_ns":10})
        );
        assert!(text.lines().nth(1).unwrap().contains("\"index\":7"));
        let back: Vec<Event<String, Value>> = read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn malformed_json_line_is_an_error_naming_the_line() {
        // Goal: a bad line is reported with its number, not skipped or panicked on.
        let text = "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"value\":null,\"time_ns\":1}\n{oops\n";
        let err = read_jsonl::<String, Value>(text.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::Json { line: 2, .. }), "{err}");
    }

    #[test]
    fn pairing_matches_completions_to_their_process_and_leaves_info_open() {
        // Goal: interleaved processes pair correctly; info and missing completions are unknown.
        let ops = pair(vec![
            ev(1, EventType::Invoke, "write", json!(1), 1),
            ev(2, EventType::Invoke, "read", Value::Null, 2),
            ev(2, EventType::Ok, "read", json!(1), 3),
            ev(1, EventType::Info, "write", json!(1), 4),
            ev(1, EventType::Invoke, "write", json!(2), 5),
            ev(3, EventType::Invoke, "write", json!(3), 6),
            ev(3, EventType::Fail, "write", json!(3), 7),
        ])
        .unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!((ops[0].process, ops[0].is_unknown()), (1, true));
        assert_eq!(ops[0].known_return_ns(), None);
        assert!(ops[1].is_ok());
        assert_eq!(ops[1].known_return_ns(), Some(3));
        assert_eq!(ops[1].completion.as_ref().unwrap().value, json!(1));
        assert!(ops[2].is_unknown() && ops[2].completion.is_none());
        assert!(ops[3].is_fail());
    }

    #[test]
    fn pairing_rejects_malformed_histories() {
        // Goal: each kind of malformed history is an error, never a silent guess.
        let orphan = vec![ev(1, EventType::Ok, "read", json!(1), 1)];
        let double = vec![
            ev(1, EventType::Invoke, "read", Value::Null, 1),
            ev(1, EventType::Invoke, "read", Value::Null, 2),
        ];
        let wrong_f = vec![
            ev(1, EventType::Invoke, "read", Value::Null, 1),
            ev(1, EventType::Ok, "write", json!(1), 2),
        ];
        let backwards = vec![
            ev(1, EventType::Invoke, "read", Value::Null, 5),
            ev(1, EventType::Ok, "read", json!(1), 4),
        ];
        for (name, h) in [
            ("orphan", orphan),
            ("double", double),
            ("wrong_f", wrong_f),
            ("backwards", backwards),
        ] {
            assert!(pair(h).is_err(), "{name} should be rejected");
        }
    }
}
