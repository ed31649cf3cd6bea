//! `booking certs --config FILE [--out DIR]`: makes the certificates the
//! file's cluster needs (see `cluster_tls::certs`), and says what it wrote.
//!
//! `--out DIR` writes every file under DIR with the default names, whatever
//! the file's `[tls]` keys say (to prepare certificates for another machine
//! and copy them). Must not: hold certificate logic (that is `cluster-tls`).

use std::path::PathBuf;
use std::process::ExitCode;

use cluster_config::ClusterConfig;

use crate::UsageError;

pub fn run(config_path: PathBuf, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut config = crate::load_config(&config_path)?;
    if let Some(out) = out {
        let out = std::path::absolute(&out).unwrap_or(out);
        config.tls.dir = Some(out);
        let t = &mut config.tls;
        for key in [
            &mut t.ca_file,
            &mut t.ca_key_file,
            &mut t.client_cert_file,
            &mut t.client_key_file,
            &mut t.admin_cert_file,
            &mut t.admin_key_file,
        ] {
            *key = None;
        }
        for node in &mut config.nodes {
            node.cert_file = None;
            node.key_file = None;
        }
    }
    let report = ensure(&config)?;
    if report.written.is_empty() {
        println!(
            "every certificate is already there ({}); nothing written",
            config.tls_dir().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes what is missing and prints one line per file written.
pub fn ensure(config: &ClusterConfig) -> anyhow::Result<cluster_tls::CertsReport> {
    let report = cluster_tls::ensure_certs(config).map_err(|e| UsageError(e.to_string()))?;
    for path in &report.written {
        println!("wrote {}", path.display());
    }
    Ok(report)
}
