//! Reading the PEM files `[tls]` names into tonic's TLS settings, checked at
//! start so a node or client with a missing or wrong file says which one
//! instead of failing its first handshake.
//!
//! Owns: [`NodeTls`] (a node's server settings: its certificate, and the CA
//! every caller must chain to; and the client settings it dials peers with)
//! and [`ClientTls`] (the CA and one client identity, as bytes so client
//! options stay comparable). Must not: decide who may call what (that is
//! [`crate::roles`]).

use std::path::Path;
use std::time::Duration;

use cluster_config::ClusterConfig;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::roles::role_uris;
use crate::TlsError;

/// Bound on one TLS handshake, server and client side: a peer that opens a
/// connection and says nothing holds no handshake slot longer than this.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// Which client certificate a process presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsIdentity {
    /// `[tls] client_cert_file`: client RPCs (the gateway, the library, the harnesses).
    Client,
    /// `[tls] admin_cert_file`: client RPCs and administration (`bookctl`).
    Admin,
}

/// Reads `path`, naming `what` when it is missing or unreadable.
fn read(what: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TlsError::Missing {
                what: what.to_string(),
                path: path.to_path_buf(),
            }
        } else {
            TlsError::Io {
                what: what.to_string(),
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// The DER of the first certificate of a PEM file, or an error naming it.
fn first_cert_der(what: &str, path: &Path, pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    let invalid = |message: String| TlsError::Invalid {
        what: what.to_string(),
        path: path.to_path_buf(),
        message,
    };
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| invalid(format!("not PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            block
                .parse_x509()
                .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
            return Ok(block.contents);
        }
    }
    Err(invalid("holds no CERTIFICATE block".to_string()))
}

/// Checks that a PEM file holds a private key (tonic parses it at use).
fn check_key(what: &str, path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        return Ok(());
    }
    Err(TlsError::Invalid {
        what: what.to_string(),
        path: path.to_path_buf(),
        message: "holds no PEM private key".to_string(),
    })
}

/// The CA, a certificate and its key, read and checked.
#[derive(Clone, PartialEq, Eq)]
struct Material {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// DER of the leaf, for the role check at load.
    cert_der: Vec<u8>,
}

fn material(
    config: &ClusterConfig,
    cert: &Path,
    key: &Path,
    whose: &str,
) -> Result<Material, TlsError> {
    let ca = config.tls_files().ca_cert;
    let ca_pem = read("[tls] CA certificate", &ca)?;
    first_cert_der("[tls] CA certificate", &ca, &ca_pem)?;
    let cert_what = format!("{whose} certificate");
    let key_what = format!("{whose} private key");
    let cert_pem = read(&cert_what, cert)?;
    let cert_der = first_cert_der(&cert_what, cert, &cert_pem)?;
    let key_pem = read(&key_what, key)?;
    check_key(&key_what, key, &key_pem)?;
    Ok(Material {
        ca_pem,
        cert_pem,
        key_pem,
        cert_der,
    })
}

/// A node's TLS settings: what it serves with and what it dials peers with.
#[derive(Clone)]
pub struct NodeTls {
    /// For `Server::builder().tls_config`: the node's certificate, and the
    /// CA a caller's certificate must chain to (required, not optional).
    pub server: ServerTlsConfig,
    /// For dialling peers: the same CA, the node's certificate as identity.
    pub client: ClientTlsConfig,
}

impl NodeTls {
    /// Node `id`'s settings from the config, or `None` with `[tls] mode =
    /// "off"`. Refuses a missing file (naming it) and a node certificate
    /// without `[tls] node_role_uri` (its peers would refuse it).
    pub fn load(config: &ClusterConfig, id: u64) -> Result<Option<NodeTls>, TlsError> {
        if !config.tls_on() {
            return Ok(None);
        }
        let (cert, key) = config.node_tls_files(id);
        let m = material(config, &cert, &key, &format!("node {id}"))?;
        let uris = role_uris(&m.cert_der).map_err(|message| TlsError::Invalid {
            what: format!("node {id} certificate"),
            path: cert.clone(),
            message,
        })?;
        if !uris.iter().any(|u| u == &config.tls.node_role_uri) {
            return Err(TlsError::Invalid {
                what: format!("node {id} certificate"),
                path: cert,
                message: format!(
                    "lacks the node role (URI SAN {:?}, [tls] node_role_uri); it has {uris:?}: \
                     its peers would refuse it",
                    config.tls.node_role_uri
                ),
            });
        }
        let identity = Identity::from_pem(&m.cert_pem, &m.key_pem);
        let ca = Certificate::from_pem(&m.ca_pem);
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        Ok(Some(NodeTls {
            server: ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(ca.clone())
                .client_auth_optional(false)
                .timeout(timeout),
            client: ClientTlsConfig::new()
                .ca_certificate(ca)
                .identity(identity)
                .timeout(timeout),
        }))
    }
}

/// A client's TLS settings: the cluster's CA and one client identity.
/// Equal when the bytes are; `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    m: Material,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("cert_bytes", &self.m.cert_pem.len())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The identity `which` from the config, or `None` with `[tls] mode = "off"`.
    pub fn load(config: &ClusterConfig, which: TlsIdentity) -> Result<Option<ClientTls>, TlsError> {
        if !config.tls_on() {
            return Ok(None);
        }
        let files = config.tls_files();
        let (cert, key, whose) = match which {
            TlsIdentity::Client => (files.client_cert, files.client_key, "[tls] client"),
            TlsIdentity::Admin => (files.admin_cert, files.admin_key, "[tls] admin"),
        };
        Ok(Some(ClientTls {
            m: material(config, &cert, &key, whose)?,
        }))
    }

    /// From explicit files (a client that has no `cluster.toml`).
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<ClientTls, TlsError> {
        let ca_pem = read("CA certificate", ca)?;
        first_cert_der("CA certificate", ca, &ca_pem)?;
        let cert_pem = read("client certificate", cert)?;
        let cert_der = first_cert_der("client certificate", cert, &cert_pem)?;
        let key_pem = read("client private key", key)?;
        check_key("client private key", key, &key_pem)?;
        Ok(ClientTls {
            m: Material {
                ca_pem,
                cert_pem,
                key_pem,
                cert_der,
            },
        })
    }

    /// tonic's settings for a channel (`Endpoint::tls_config`).
    pub fn tonic_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.m.ca_pem))
            .identity(Identity::from_pem(&self.m.cert_pem, &self.m.key_pem))
            .timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS))
    }
}
