//! Reader for Jepsen's text logs of a compare-and-set register, the format of
//! `../shared/checker-corpus/jepsen-etcd-register/` (see its README).
//!
//! Owns: parsing lines such as `INFO  jepsen.util - 3\t:ok\t:cas\t[1 4]` into
//! history events, and decoding those into register operations for
//! `models::register`.
//!
//! An event is found on any line as `PROCESS :TYPE :F VALUE` (tab or space
//! separated), where PROCESS is a number and TYPE one of invoke/ok/fail/info;
//! lines without that shape (log noise, nemesis lines) are ignored. A line
//! with an event type (`:ok`, ...) that is not a well-formed event is an
//! error, as is a file with no event at all: unreadable input must never turn
//! into a verdict. The log has no timestamps, so an event's line number is its
//! time: lines are written in the order things happened.
//!
//! Must not: check anything. Caveats: values are integers or nil (`[A B]` for
//! a cas); a `:timed-out` completion value is kept as a keyword, and for
//! `info` the invoke's value is what counts.

use std::path::Path;

use crate::error::{Error, Result};
use crate::history::{self, Event, EventType};
use crate::linearizability::{Op, Outcome};
use crate::models::register::{RegisterOp, RegisterRet};

/// A value as Jepsen prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JepsenValue {
    Nil,
    Int(i64),
    /// `[A B]`, as a cas prints its arguments.
    List(Vec<JepsenValue>),
    /// `:timed-out` and the like.
    Keyword(String),
}

/// A parsed log line: `f` without its colon (`read`, `write`, `cas`).
pub type JepsenEvent = Event<String, JepsenValue>;

/// Parses a whole log.
pub fn parse_log(text: &str) -> Result<Vec<JepsenEvent>> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        match parse_line(line, line_no as u64) {
            Ok(Some(e)) => events.push(e),
            Ok(None) => {}
            Err(reason) => {
                return Err(Error::Parse {
                    line: line_no,
                    reason,
                    text: line.to_owned(),
                })
            }
        }
    }
    if events.is_empty() {
        return Err(Error::Parse {
            line: 0,
            reason: "no Jepsen events found".into(),
            text: String::new(),
        });
    }
    Ok(events)
}

/// Reads and parses a log file.
pub fn read_log(path: &Path) -> Result<Vec<JepsenEvent>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    parse_log(&text)
}

/// `Ok(None)`: not an event line. `Err`: looks like one but is malformed.
fn parse_line(line: &str, time: u64) -> Result<Option<JepsenEvent>, String> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let is_type = |t: &str| matches!(t, ":invoke" | ":ok" | ":fail" | ":info");
    let start = (0..tokens.len().saturating_sub(1))
        .find(|&i| tokens[i].parse::<u64>().is_ok() && is_type(tokens[i + 1]));
    let Some(start) = start else {
        // An event type after something other than a process number is a
        // damaged event, except for the nemesis, which is not a client.
        let damaged = (0..tokens.len())
            .any(|i| is_type(tokens[i]) && (i == 0 || tokens[i - 1] != ":nemesis"));
        return if damaged {
            Err("an event type without a `PROCESS :TYPE :F VALUE` event".into())
        } else {
            Ok(None)
        };
    };
    let process = tokens[start].parse::<u64>().expect("checked above");
    let kind = match tokens[start + 1] {
        ":invoke" => EventType::Invoke,
        ":ok" => EventType::Ok,
        ":fail" => EventType::Fail,
        _ => EventType::Info,
    };
    let f = tokens
        .get(start + 2)
        .and_then(|t| t.strip_prefix(':'))
        .filter(|f| !f.is_empty())
        .ok_or("missing :f")?;
    let rest = tokens[start + 3..].join(" ");
    if rest.is_empty() {
        return Err("missing value".into());
    }
    let value = parse_value(&rest)?;
    Ok(Some(Event {
        process,
        kind,
        f: f.to_owned(),
        value,
        time_ns: time,
        index: None,
    }))
}

fn parse_value(text: &str) -> Result<JepsenValue, String> {
    let text = text.trim();
    if text == "nil" {
        Ok(JepsenValue::Nil)
    } else if let Some(k) = text.strip_prefix(':') {
        Ok(JepsenValue::Keyword(k.to_owned()))
    } else if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        inner
            .split_whitespace()
            .map(parse_value)
            .collect::<Result<_, _>>()
            .map(JepsenValue::List)
    } else {
        text.parse::<i64>()
            .map(JepsenValue::Int)
            .map_err(|_| format!("unreadable value {text:?}"))
    }
}

/// Turns a parsed register log into checker operations. `fail` operations and
/// reads with no result are left out: they did not happen, or constrain
/// nothing.
pub fn register_ops(
    events: Vec<JepsenEvent>,
) -> Result<Vec<Op<RegisterOp<i64>, RegisterRet<i64>>>> {
    let mut ops = Vec::new();
    for op in history::pair(events)? {
        if op.is_fail() {
            continue;
        }
        let bad = |reason: String| Error::Decode { op: op.id, reason };
        let int = |v: &JepsenValue| match v {
            JepsenValue::Int(i) => Ok(*i),
            other => Err(bad(format!("expected an integer, got {other:?}"))),
        };
        let input = match op.f.as_str() {
            "read" => RegisterOp::Read,
            "write" => RegisterOp::Write(int(&op.value)?),
            "cas" => match &op.value {
                JepsenValue::List(pair) if pair.len() == 2 => RegisterOp::Cas {
                    from: int(&pair[0])?,
                    to: int(&pair[1])?,
                },
                other => return Err(bad(format!("cas expects [FROM TO], got {other:?}"))),
            },
            other => return Err(bad(format!("unknown register function {other:?}"))),
        };
        let outcome = match (op.known_return_ns(), &op.completion) {
            (Some(return_ns), Some(c)) => {
                let output = match (&input, &c.value) {
                    (RegisterOp::Read, JepsenValue::Nil) => RegisterRet::Value(None),
                    (RegisterOp::Read, v) => RegisterRet::Value(Some(int(v)?)),
                    _ => RegisterRet::Done,
                };
                Outcome::Returned { output, return_ns }
            }
            // An unknown read changes nothing.
            _ if input == RegisterOp::Read => continue,
            _ => Outcome::Unknown,
        };
        ops.push(Op {
            id: op.id,
            process: op.process,
            input,
            outcome,
            call_ns: op.invoke_ns,
        });
    }
    Ok(ops)
}

/// Reads a register log and decodes it, ready for `linearizability::check`.
pub fn read_register_log(path: &Path) -> Result<Vec<Op<RegisterOp<i64>, RegisterRet<i64>>>> {
    register_ops(read_log(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tabs_spaces_and_every_value_shape() {
        // Goal: both separators and nil/int/list/keyword values parse; noise lines are skipped.
        let log = "some preamble\n\
                   INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 0   :ok     :read   3\n\
                   INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]\n\
                   INFO  jepsen.util - :nemesis :info :start nil\n\
                   INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n";
        let events = parse_log(log).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(
            (events[0].time_ns, &events[0].f, &events[0].value),
            (2, &"read".to_owned(), &JepsenValue::Nil)
        );
        assert_eq!(events[1].value, JepsenValue::Int(3));
        assert_eq!(
            events[2].value,
            JepsenValue::List(vec![JepsenValue::Int(3), JepsenValue::Int(4)])
        );
        assert_eq!(
            (events[3].kind, &events[3].value),
            (EventType::Info, &JepsenValue::Keyword("timed-out".into()))
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        // Goal: broken event lines and files without events are errors with a line number.
        for (log, line) in [
            ("INFO  jepsen.util - 0\t:invoke\t:read\n", 1),
            ("INFO  jepsen.util - 0\t:ok\t:read\t[1 x]\n", 1),
            ("x\nINFO  jepsen.util - zero :invoke :read nil\n", 2),
            ("\u{0}\u{1}binary junk", 0),
            ("", 0),
        ] {
            match parse_log(log) {
                Err(Error::Parse { line: l, .. }) => assert_eq!(l, line, "{log:?}"),
                other => panic!("{log:?} should be a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn decodes_register_operations_with_jepsen_semantics() {
        // Goal: fail dropped, info kept as unknown with the invoke's value, timed-out reads dropped.
        let log = "INFO jepsen.util - 0 :invoke :write 1\n\
                   INFO jepsen.util - 1 :invoke :cas [1 2]\n\
                   INFO jepsen.util - 2 :invoke :cas [5 6]\n\
                   INFO jepsen.util - 3 :invoke :read nil\n\
                   INFO jepsen.util - 0 :ok :write 1\n\
                   INFO jepsen.util - 1 :info :cas :timed-out\n\
                   INFO jepsen.util - 2 :fail :cas [5 6]\n\
                   INFO jepsen.util - 3 :fail :read :timed-out\n\
                   INFO jepsen.util - 4 :invoke :read nil\n\
                   INFO jepsen.util - 4 :ok :read nil\n";
        let ops = register_ops(parse_log(log).unwrap()).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].input, RegisterOp::Write(1));
        assert_eq!(
            ops[0].outcome,
            Outcome::Returned {
                output: RegisterRet::Done,
                return_ns: 5
            }
        );
        assert_eq!(
            (ops[1].input.clone(), ops[1].outcome.clone()),
            (RegisterOp::Cas { from: 1, to: 2 }, Outcome::Unknown)
        );
        assert_eq!(
            ops[2].outcome,
            Outcome::Returned {
                output: RegisterRet::Value(None),
                return_ns: 10
            }
        );
    }
}
