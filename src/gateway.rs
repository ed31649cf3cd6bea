//! `booking gateway --config FILE`: the HTTP gateway of the file's cluster.
//!
//! Connects a `client::Client` to every `[[node]]` of the file, builds
//! [`GatewaySettings`] from it (`[gateway]`, `[auth]`, `[payments]`, secret
//! files under `<data_dir>/gateway/` unless the file names others), and
//! serves until Ctrl-C or SIGTERM.
//!
//! Owns: the mapping of gateway start-up failures to exit codes (a refused
//! setting is a usage error, exit 2). Must not: hold any HTTP logic; that is
//! `http_gateway::serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use client::{Client, ClientOptions};
use http_gateway::{ClientCluster, GatewayError, GatewaySettings};

use crate::UsageError;

/// The gateway settings `booking` derives from a cluster file; `up` uses the
/// same function so it creates the very secret files its gateway child reads.
pub fn settings(config: &cluster_config::ClusterConfig) -> GatewaySettings {
    GatewaySettings::from_config(config)
}

pub async fn run(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    // BOOKING_FAULT_BUG: an unknown bug name, or any name in a build without
    // the `fault-injection-bugs` feature, refuses to start (exit 2).
    http_gateway::fault::select_from_env().map_err(UsageError)?;
    let config = crate::load_config(&config_path)?;
    let settings = settings(&config);
    // Checked before binding, so demo mode or the simulated provider on a
    // public address, or jwt mode without its keys, is refused with exit 2
    // and a message naming the key, not a bind error.
    settings
        .validate()
        .map_err(|e| UsageError(format!("{}: {e}", config_path.display())))?;
    let shutdown = crate::shutdown_signal().context("cannot install signal handlers")?;
    // A missing client certificate is the operator's to fix (exit 2).
    let client = Client::from_config(&config, ClientOptions::default())
        .map_err(|e| UsageError(format!("{}: {e}", config_path.display())))?;
    if !config.tls_on() {
        tracing::warn!("[tls] mode = \"off\": the gateway talks to the nodes in plaintext (experiments on loopback only)");
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on [gateway] listen = {}", settings.listen))?;
    match http_gateway::serve(settings, ClientCluster::new(client), listener, shutdown).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(GatewayError::Settings(e)) => {
            Err(UsageError(format!("{}: {e}", config_path.display())).into())
        }
        Err(e) => Err(anyhow::Error::new(e).context("gateway failed")),
    }
}
