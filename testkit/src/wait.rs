//! Waiting for conditions, and loopback ports to listen on.
//!
//! Owns: [`wait_for`] (poll a condition with a bound and a message; panics
//! on timeout, for tests), [`wait_until`] (the same, returning an error, for
//! the binaries), and [`free_addr`].
//!
//! Must not: sleep for a fixed time as synchronisation. Every wait here
//! polls a condition every [`POLL`] and gives up after its bound.
//!
//! Caveat: a port from [`free_addr`] was free when it was picked; another
//! program may bind it before the node does. The port lies outside the
//! kernel's ephemeral range, so no outgoing connection can take it, only an
//! explicit bind; if one does, the node fails to start, loudly, and the
//! harness reports it.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use crate::Error;

/// A generous bound on any awaited condition in a test: CI machines are
/// loaded, and a bound only has to catch a hang, not measure anything.
pub const WAIT: Duration = Duration::from_secs(30);
/// Pause between two looks at a condition.
const POLL: Duration = Duration::from_millis(50);
/// Most ports [`free_addr`] asks the OS for before giving up.
const FREE_PORT_TRIES_MAX: usize = 1_000;

/// Polls `check` every [`POLL`] until it yields `Some`, for at most `limit`;
/// panics naming `what` if it never does.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polled = wait_until(what, limit, || {
        let look = check();
        async move { Ok(look.await) }
    })
    .await;
    polled.unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `check` every [`POLL`] until it yields `Ok(Some)`, for at most
/// `limit`. An `Err` from `check` ends the wait at once (a child that died
/// will not start listening later); a timeout is [`Error::TimedOut`].
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::TimedOut {
                what: what.to_string(),
                limit,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where the kernel picks the local ports of outgoing connections.
const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Linux's default ephemeral range, if [`EPHEMERAL_RANGE_FILE`] is unreadable.
const EPHEMERAL_DEFAULT: (u16, u16) = (32_768, 60_999);
/// Lowest port [`free_addr`] hands out: above the well-known services a
/// test machine may run (etcd 2379, PostgreSQL 5432, Redis 6379, …).
const PICK_LOW: u16 = 10_000;
/// Fewest ports a pick range needs before [`free_addr`] uses it.
const PICK_RANGE_MIN: u16 = 1_000;

/// A loopback address with a port that was free a moment ago. Never hands
/// out the same port twice in one process.
///
/// The port lies outside the kernel's ephemeral range (below it, or above
/// it if there is no room below). Why: the port is released before a node
/// binds it, and a port from the ephemeral range can meanwhile become the
/// local end of any outgoing connection on the machine (the other nodes'
/// gRPC clients, the test's own HTTP calls), so the node could not bind it
/// (CI saw exactly that: "binding gRPC address 127.0.0.1:33152: Address
/// already in use"). Outside the range only an explicit bind can take it.
/// Each process starts its walk through the range at an offset from its pid,
/// so two harnesses running at once rarely try the same ports; a port that
/// anyone holds fails the bind check and is skipped.
///
/// Falls back to a port from the OS (port 0) only when the ephemeral range
/// leaves fewer than [`PICK_RANGE_MIN`] ports on either side.
///
/// Panics if no fresh port can be bound: the machine is out of ports or
/// file descriptors, which no harness could work around.
pub fn free_addr() -> SocketAddr {
    static PICKER: Mutex<Option<Picker>> = Mutex::new(None);
    let mut picker = PICKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let picker = picker.get_or_insert_with(|| Picker::new(pick_range(ephemeral_range())));
    for _ in 0..FREE_PORT_TRIES_MAX {
        let port = picker.next_candidate();
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("a bound socket has no address: {e}"));
        if picker.given.insert(addr.port()) {
            return addr;
        }
    }
    panic!("no fresh loopback port after {FREE_PORT_TRIES_MAX} tries");
}

/// The process's walk through its pick range, and the ports it gave out.
struct Picker {
    /// Ports to walk, `None` to ask the OS (port 0) each time.
    range: Option<(u16, u16)>,
    /// Steps taken so far.
    step: u32,
    /// Where this process starts in the range.
    offset: u32,
    given: BTreeSet<u16>,
}

impl Picker {
    fn new(range: Option<(u16, u16)>) -> Picker {
        // Spread processes apart: pids of harnesses started one after the
        // other differ by a few, so multiply by a large odd stride.
        let offset = std::process::id().wrapping_mul(7_919);
        Picker {
            range,
            step: 0,
            offset,
            given: BTreeSet::new(),
        }
    }

    fn next_candidate(&mut self) -> u16 {
        let Some((low, high)) = self.range else {
            return 0;
        };
        let span = u32::from(high - low) + 1;
        let at = (self.offset.wrapping_add(self.step)) % span;
        self.step = self.step.wrapping_add(1);
        // `at < span <= u16::MAX - low + 1`, so the sum fits.
        low + at as u16
    }
}

/// The kernel's ephemeral port range, inclusive.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string(EPHEMERAL_RANGE_FILE)
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(EPHEMERAL_DEFAULT)
}

/// "32768\t60999\n" → (32768, 60999).
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u16>().ok());
    let (low, high) = (fields.next()??, fields.next()??);
    (low <= high).then_some((low, high))
}

/// The inclusive range [`free_addr`] walks: below the ephemeral range if it
/// leaves room there, else above it, else none (ask the OS).
fn pick_range((eph_low, eph_high): (u16, u16)) -> Option<(u16, u16)> {
    if eph_low > PICK_LOW && eph_low - PICK_LOW >= PICK_RANGE_MIN {
        return Some((PICK_LOW, eph_low - 1));
    }
    let above_low = eph_high.checked_add(1)?.max(PICK_LOW);
    (u16::MAX - above_low >= PICK_RANGE_MIN).then_some((above_low, u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: free_addr never repeats a port within one process.
    #[test]
    fn no_port_is_handed_out_twice() {
        let ports: BTreeSet<u16> = (0..200).map(|_| free_addr().port()).collect();
        assert_eq!(ports.len(), 200);
    }

    // Goal: no port free_addr hands out can be taken meanwhile as the local
    // end of an outgoing connection (the cause of a CI failure: a node could
    // not bind a port from the ephemeral range).
    #[test]
    fn ports_lie_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        if pick_range((low, high)).is_none() {
            return; // The whole port space is ephemeral: nothing to avoid.
        }
        for _ in 0..200 {
            let port = free_addr().port();
            assert!(
                !(low..=high).contains(&port),
                "port {port} is in the ephemeral range {low}-{high}"
            );
        }
    }

    // Goal: the pick range is below the ephemeral range when there is room,
    // above it otherwise, and absent when neither side has room.
    #[test]
    fn the_pick_range_avoids_the_ephemeral_range() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("garbage"), None);
        assert_eq!(pick_range((32_768, 60_999)), Some((10_000, 32_767)));
        assert_eq!(pick_range((10_500, 50_000)), Some((50_001, 65_535)));
        assert_eq!(pick_range((1_024, 65_535)), None);
        assert_eq!(pick_range((1_024, 64_999)), None);
    }

    // Goal: wait_until returns the first value, stops at a check's error, and times out with the message.
    #[tokio::test]
    async fn wait_until_returns_stops_and_times_out() {
        let mut looks = 0;
        let value = wait_until("the third look", WAIT, || {
            looks += 1;
            let n = looks;
            async move { Ok((n == 3).then_some(n)) }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);

        let failed: Result<(), Error> = wait_until("nothing", WAIT, || async {
            Err(Error::Node("the child died".into()))
        })
        .await;
        assert!(matches!(failed, Err(Error::Node(_))), "{failed:?}");

        let never: Result<(), Error> =
            wait_until("Godot", Duration::from_millis(120), || async { Ok(None) }).await;
        let message = never.unwrap_err().to_string();
        assert!(message.contains("waiting for Godot"), "{message}");
    }
}
