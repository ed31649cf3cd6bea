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
//! program may take it before the node binds it. The node then fails to
//! start, loudly, and the harness reports it.

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

/// A loopback address with a port that was free a moment ago (bound with
/// port 0, then released). Never hands out the same port twice in one
/// process, although the OS may offer it again.
///
/// Panics if no fresh port can be bound: the machine is out of ports or
/// file descriptors, which no harness could work around.
pub fn free_addr() -> SocketAddr {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..FREE_PORT_TRIES_MAX {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("a bound socket has no address: {e}"));
        let fresh = GIVEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(addr.port());
        if fresh {
            return addr;
        }
    }
    panic!("no fresh loopback port after {FREE_PORT_TRIES_MAX} tries");
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
