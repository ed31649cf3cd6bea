//! `booking certs`: makes the certificates a cluster needs and nothing
//! else. A CA (when there is none), a certificate per `[[node]]` (its IP
//! address as SAN, `localhost` too on loopback, the node role URI; server
//! and client use, since a node also dials its peers), a client certificate
//! (the gateway, the library) and an admin certificate (`bookctl`). Keys are
//! written 0600, certificates 0644, each through a temporary file and a
//! rename so a crash leaves no half file.
//!
//! Idempotent: an existing file is kept, only missing ones are made, signed
//! by the CA on disk (`[tls] ca_key_file`). So `booking up` runs it at every
//! start, and adding a `[[node]]` and running it again makes that node's
//! certificate only.
//!
//! Must not: overwrite or renew a file (rotation is the operator's, with
//! their own CA or by deleting the files), or sign with a CA whose key is
//! not there (it says which file is missing instead).
//!
//! Caveat: two processes making certificates in one directory at once could
//! each make a CA; within one process calls are serialised.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cluster_config::ClusterConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::TlsError;

/// The URI SAN of the generated client certificate (informative: any
/// certificate from the CA is a client; only node and admin are checked).
pub const CLIENT_ROLE_URI: &str = "urn:booking:role:client";
/// Lifetime of the generated CA, in days (10 years).
pub const CA_VALIDITY_DAYS: i64 = 3_650;
/// Lifetime of a generated node or client certificate, in days (about 5
/// years): long, because nothing renews them yet; an operator who wants
/// short-lived certificates issues them from their own CA.
pub const LEAF_VALIDITY_DAYS: i64 = 1_825;

/// What one run wrote and what it found already there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertsReport {
    pub written: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// Serialises runs within one process (tests start clusters concurrently).
static RUN: Mutex<()> = Mutex::new(());

fn generate_err(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` with `mode` through a temporary file in the same
/// directory, synced before the rename.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
        // The directory holds private keys: its owner only.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("restricting", dir, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err("writing", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("renaming into", path, e))?;
    // The rename is durable only once the directory is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing", dir, e))?;
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack before now: a peer whose clock is a little behind still
    // accepts a certificate made a moment ago.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "booking");
    dn.push(DnType::CommonName, format!("booking {cluster} CA"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, CA_VALIDITY_DAYS);
    p
}

/// A leaf's parameters: common name, SANs (IPs and DNS names as text, then
/// the role URI), and whether it serves (nodes) as well as calls.
fn leaf_params(
    common_name: &str,
    names: &[String],
    role_uri: &str,
    serves: bool,
) -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "booking");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    for name in names {
        p.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e| generate_err(common_name, e))?,
            ),
        });
    }
    p.subject_alt_names.push(SanType::URI(
        role_uri
            .to_string()
            .try_into()
            .map_err(|e| generate_err(common_name, e))?,
    ));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = if serves {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    validity(&mut p, LEAF_VALIDITY_DAYS);
    Ok(p)
}

/// One certificate to make if missing.
struct Leaf {
    what: String,
    cert: PathBuf,
    key: PathBuf,
    params: CertificateParams,
}

/// Makes every missing certificate and key of `config`'s `[tls]` layout
/// (whatever `[tls] mode` says: the caller decides whether it wants them).
pub fn ensure_certs(config: &ClusterConfig) -> Result<CertsReport, TlsError> {
    let _one_at_a_time = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let files = config.tls_files();
    let t = &config.tls;
    let mut leaves = Vec::new();
    for node in &config.nodes {
        let (cert, key) = config.node_tls_files(node.id);
        let mut names = vec![node.addr.ip().to_string()];
        if node.addr.ip().is_loopback() {
            names.push("localhost".to_string());
        }
        leaves.push(Leaf {
            what: format!("node {} certificate", node.id),
            cert,
            key,
            params: leaf_params(&format!("node-{}", node.id), &names, &t.node_role_uri, true)?,
        });
    }
    leaves.push(Leaf {
        what: "client certificate".into(),
        cert: files.client_cert.clone(),
        key: files.client_key.clone(),
        params: leaf_params("client", &[], CLIENT_ROLE_URI, false)?,
    });
    leaves.push(Leaf {
        what: "admin certificate".into(),
        cert: files.admin_cert.clone(),
        key: files.admin_key.clone(),
        params: leaf_params("admin", &[], &t.admin_role_uri, false)?,
    });

    let mut report = CertsReport::default();
    let missing: Vec<&Leaf> = leaves
        .iter()
        .filter(|l| !l.cert.exists() || !l.key.exists())
        .collect();
    for leaf in leaves.iter().filter(|l| l.cert.exists() && l.key.exists()) {
        report.kept.push(leaf.cert.clone());
    }
    if let Some(half) = missing.iter().find(|l| l.cert.exists() != l.key.exists()) {
        let (there, absent) = if half.cert.exists() {
            (&half.cert, &half.key)
        } else {
            (&half.key, &half.cert)
        };
        return Err(TlsError::Invalid {
            what: half.what.clone(),
            path: absent.clone(),
            message: format!(
                "is missing while {} exists: restore it, or delete both to make a new pair",
                there.display()
            ),
        });
    }

    let ca_there = files.ca_cert.exists();
    let (ca_pem, ca_key) = if ca_there {
        report.kept.push(files.ca_cert.clone());
        if missing.is_empty() {
            return Ok(report);
        }
        let key_pem = std::fs::read_to_string(&files.ca_key).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TlsError::Invalid {
                    what: "[tls] CA private key".into(),
                    path: files.ca_key.clone(),
                    message: format!(
                        "does not exist, so {} cannot be signed: issue it with your CA, or give \
                         ca_key_file",
                        missing[0].cert.display()
                    ),
                }
            } else {
                io_err("reading the CA private key", &files.ca_key, e)
            }
        })?;
        let ca_pem = std::fs::read_to_string(&files.ca_cert)
            .map_err(|e| io_err("reading the CA certificate", &files.ca_cert, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Invalid {
            what: "[tls] CA private key".into(),
            path: files.ca_key.clone(),
            message: e.to_string(),
        })?;
        (ca_pem, key)
    } else {
        // A new CA would not be the one the existing certificates chain to.
        if let Some(path) = report.kept.first() {
            return Err(TlsError::Invalid {
                what: "[tls] CA certificate".into(),
                path: files.ca_cert.clone(),
                message: format!(
                    "does not exist while {} does: restore the CA, or delete the certificates to \
                     start over",
                    path.display()
                ),
            });
        }
        let key = KeyPair::generate().map_err(|e| generate_err("the CA key", e))?;
        let cert = ca_params(&config.cluster.name)
            .self_signed(&key)
            .map_err(|e| generate_err("the CA", e))?;
        write_file(&files.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&files.ca_cert, cert.pem().as_bytes(), 0o644)?;
        report.written.push(files.ca_key.clone());
        report.written.push(files.ca_cert.clone());
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).map_err(|e| TlsError::Invalid {
        what: "[tls] CA certificate".into(),
        path: files.ca_cert.clone(),
        message: e.to_string(),
    })?;
    for leaf in missing {
        let key = KeyPair::generate().map_err(|e| generate_err(&leaf.what, e))?;
        let cert = leaf
            .params
            .signed_by(&key, &issuer)
            .map_err(|e| generate_err(&leaf.what, e))?;
        write_file(&leaf.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&leaf.cert, cert.pem().as_bytes(), 0o644)?;
        report.written.push(leaf.key.clone());
        report.written.push(leaf.cert.clone());
    }
    Ok(report)
}
