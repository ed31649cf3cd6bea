//! The roles a caller's certificate carries, and the one check every RPC
//! makes before it does anything.
//!
//! Roles (see ARCHITECTURE.md "Security: mutual TLS"):
//! - [`Role::Client`]: any certificate the cluster's CA signed (the TLS
//!   handshake already verified the chain): reads, writes, watch, status;
//! - [`Role::Node`]: the URI SAN `[tls] node_role_uri`: the peer RPCs
//!   (AppendEntries, Vote, InstallSnapshot, ReadIndex);
//! - [`Role::Admin`]: the URI SAN `[tls] admin_role_uri`: membership changes
//!   and snapshot administration.
//!
//! Must not: verify chains (rustls did, in the handshake) or cache verdicts
//! across connections.

use tonic::{Request, Status};
use x509_parser::extensions::GeneralName;

/// What an RPC needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Any certificate from the cluster's CA.
    Client,
    /// A node certificate.
    Node,
    /// An administrator's certificate.
    Admin,
}

/// The URI subject-alternative names of a DER certificate.
pub fn role_uris(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subjectAltName: {e}"))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Decides whether the caller of a request may make it. With TLS off every
/// caller may do anything (the config allows that on loopback only).
#[derive(Clone, Debug)]
pub struct Authorizer {
    tls_on: bool,
    node_role_uri: String,
    admin_role_uri: String,
}

impl Authorizer {
    /// The check a node with this config makes.
    pub fn from_config(config: &cluster_config::ClusterConfig) -> Authorizer {
        Authorizer {
            tls_on: config.tls_on(),
            node_role_uri: config.tls.node_role_uri.clone(),
            admin_role_uri: config.tls.admin_role_uri.clone(),
        }
    }

    /// `Ok` when the request's peer certificate carries `need`;
    /// PERMISSION_DENIED naming the missing role otherwise. UNAUTHENTICATED
    /// when there is no verified certificate at all (cannot happen behind a
    /// server that requires one; checked anyway, so a misbuilt server fails
    /// closed).
    #[allow(clippy::result_large_err)] // tonic's Status is what a handler returns.
    pub fn check<T>(&self, request: &Request<T>, need: Role) -> Result<(), Status> {
        if !self.tls_on {
            return Ok(());
        }
        let Some(certs) = request.peer_certs() else {
            return Err(Status::unauthenticated(
                "no verified client certificate on this connection",
            ));
        };
        let Some(leaf) = certs.first() else {
            return Err(Status::unauthenticated("an empty client certificate chain"));
        };
        let uri = match need {
            Role::Client => return Ok(()),
            Role::Node => &self.node_role_uri,
            Role::Admin => &self.admin_role_uri,
        };
        let uris = role_uris(leaf.as_ref()).map_err(Status::unauthenticated)?;
        if uris.iter().any(|u| u == uri) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "this RPC needs the {} role: a certificate with the URI SAN {uri:?}; the caller's has {uris:?}",
            match need {
                Role::Node => "node",
                _ => "admin",
            }
        )))
    }
}
