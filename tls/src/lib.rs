//! Mutual TLS on every gRPC port: who may talk to a node, and with which
//! certificate.
//!
//! Layout:
//! - [`load`]: reading the configured PEM files into tonic's server and
//!   client TLS settings ([`NodeTls`] for a node, [`ClientTls`] for a
//!   client), with errors that name the missing or bad file;
//! - [`roles`]: the roles a verified peer certificate carries (node, admin,
//!   any client) and [`Authorizer`], the check each RPC makes;
//! - [`certs`]: `booking certs`: a CA, a certificate per node (its address as
//!   subject-alternative name), a client and an admin certificate, keys 0600.
//!
//! Roles are URI subject-alternative names the config names
//! (`[tls] node_role_uri`, `admin_role_uri`): a URI SAN survives every CA
//! product and says what a certificate is for, where an OU is free text.
//! Any certificate the cluster's CA signed is a client.
//!
//! Must not: know protobuf, openraft or the booking domain; decide anything
//! but "which certificate, and may it call this".
//!
//! Caveats: certificates are read at start; replacing them takes a restart
//! (no reload yet). Servers are dialled by IP address (the `addr` of
//! `[[node]]`), so a node certificate must carry its IP as a SAN; IPv6
//! addresses are untested.

pub mod certs;
pub mod load;
pub mod roles;

pub use certs::{ensure_certs, CertsReport};
pub use load::{ClientTls, NodeTls, TlsIdentity};
pub use roles::{Authorizer, Role};

use std::path::PathBuf;

/// Why TLS material could not be loaded or made. Every variant is definite:
/// retrying without fixing the file gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file the config names (or defaults to) does not exist.
    #[error("{what} {} does not exist (make it with `booking certs --config <cluster.toml>`, or point [tls] at your own)", path.display())]
    Missing { what: String, path: PathBuf },
    /// A file exists but cannot be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key, or a certificate lacks
    /// what its use needs (a node certificate without the node role).
    #[error("{what} {}: {message}", path.display())]
    Invalid {
        what: String,
        path: PathBuf,
        message: String,
    },
    /// Making a certificate failed.
    #[error("generating {what}: {message}")]
    Generate { what: String, message: String },
}
