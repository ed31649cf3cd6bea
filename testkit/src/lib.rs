//! One way to start a cluster, for every harness of the workspace: the root
//! package's tests, raft-node's and http-gateway's tests, `bench` and the
//! Jepsen harness.
//!
//! Layout:
//! - [`process`]: the supervisor: child processes in their own process
//!   group that die with the harness (`PR_SET_PDEATHSIG`), log to a file
//!   (echoed with a `[name] ` prefix under `TESTKIT_ECHO=1`) and stop within
//!   a bound (SIGTERM, then SIGKILL after a grace).
//! - [`nodes`]: `booking node` processes from one `cluster.toml`, and
//!   `booking gateway` processes beside them.
//! - [`config`]: [`ConfigFile`], a typed `cluster.toml` serialised with
//!   `toml` and validated by `cluster_config` before anyone starts.
//! - [`events`]: [`TestEvent`], the event the tests create.
//! - [`skip`]: [`skip_or_fail`], the one way a test says it could not run
//!   (a failure under `CI=true`; recorded for `./scripts/test.sh`'s summary).
//! - [`wait`]: [`wait_for`] / [`wait_until`] (poll a condition, bounded,
//!   with a message), [`free_addr`].
//! - `in_process` (feature `in-process`): nodes as tasks of the test
//!   process, for raft-node's and http-gateway's tests.
//!
//! Must not: be a dependency of a shipped crate (raft-node, client,
//! http-gateway, state-machine, cluster-config, the `booking` binary); it is
//! a dev-dependency of tests and a dependency of the `bench` and `jepsen`
//! binaries only. So `booking up` keeps its own async supervisor
//! (src/up.rs), which prints its children's prefixed lines to the terminal.
//! Without `in-process` it must not reach into a node's memory: processes,
//! files, signals and the network only.
//!
//! Caveats: every harness serialises its cluster tests ([`serial`]) because
//! the CI machine has two cores; and a port from [`free_addr`] can be bound
//! by another program before a node binds it (the node then fails to start
//! and says so in its log). Such ports lie outside the kernel's ephemeral
//! range, so outgoing connections cannot take them.

mod error;

pub mod config;
pub mod events;
#[cfg(feature = "in-process")]
pub mod in_process;
pub mod nodes;
pub mod process;
pub mod skip;
pub mod wait;

#[cfg(feature = "in-process")]
pub use config::peer_channel;
pub use config::ConfigFile;
pub use error::Error;
pub use events::TestEvent;
pub use skip::skip_or_fail;
pub use wait::{free_addr, wait_for, wait_until, WAIT};

/// Serialises the cluster tests of one test binary (one process): two
/// clusters at once on a two-core machine make every bound in them tighter
/// than it needs to be. Hold the guard for the whole test; a test that
/// panicked releases it (no poisoning).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
