//! The identity record of a node's data directory (`booking-node.meta`): which
//! cluster and node the directory belongs to, the on-disk format version, the
//! directory's *incarnation* (a random id drawn when the directory is created)
//! and whether that incarnation was admitted as a voter (see
//! `node/admission.rs` and ARCHITECTURE.md "Lost disks").
//!
//! A record written by an older build has neither field: it is admitted as is
//! and gets an incarnation on its next start.
//!
//! Owns: writing the record on a first start (atomically: temporary file,
//! sync, rename, sync of the directory) and refusing a directory of another
//! cluster or node, of another format, or one that is not empty but has no
//! record. Must not: touch sled or anything inside `sled/`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::NodeError;

/// File name of the identity record in a node's data directory.
pub const IDENTITY_FILE: &str = "booking-node.meta";
/// Version of the on-disk layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The identity record (`booking-node.meta`).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    format_version: u32,
    cluster_name: String,
    node_id: u64,
    /// Hex of 128 random bits drawn when the directory was created; `None`
    /// only in records of older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incarnation: Option<String>,
    /// `Some(false)` from the creation of a fresh directory until the node
    /// learns that this incarnation may vote; `None` (older builds) counts as
    /// admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admitted: Option<bool>,
    /// `Some(true)` when the directory was created by a build that records
    /// which incarnation of each peer it saw hold entries (`witness`), so
    /// its record covers its whole life; `None` (older builds) counts as
    /// incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    witnessed_since_creation: Option<bool>,
}

/// What [`check_identity`] found: this directory's incarnation and whether it
/// may vote and acknowledge entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityInfo {
    pub incarnation: String,
    pub admitted: bool,
    /// True when this start created the directory.
    pub created: bool,
    /// True when every peer incarnation this directory saw hold entries is
    /// in its witness record (a directory of an older build saw some before
    /// it kept one).
    pub witnessed_since_creation: bool,
}

/// 128 random bits from the kernel, in hex.
fn new_incarnation() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `record` to `path`'s identity file: temporary name, sync, rename,
/// sync of the directory, so a crash leaves the old record or the new one.
fn write_record(path: &Path, record: &Identity) -> Result<(), NodeError> {
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|e| NodeError::Internal(e.to_string()))?;
    super::write_durably(path, IDENTITY_FILE, &bytes)
        .map(|_| ())
        .map_err(|e| {
            NodeError::data_dir(
                path.join(IDENTITY_FILE),
                format!("cannot write the identity record: {e}"),
            )
        })
}

fn read_record(meta_path: &Path) -> Result<Identity, NodeError> {
    let text = std::fs::read(meta_path).map_err(|e| {
        NodeError::data_dir(meta_path, format!("cannot read the identity record: {e}"))
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        NodeError::data_dir(meta_path, format!("identity record does not decode: {e}"))
    })
}

/// Records durably that this directory's incarnation was admitted as a voter.
pub fn mark_admitted(path: &Path) -> Result<(), NodeError> {
    let mut record = read_record(&path.join(IDENTITY_FILE))?;
    if record.admitted == Some(true) {
        return Ok(());
    }
    record.admitted = Some(true);
    write_record(path, &record)
}

/// Checks the record of `path` (creating it, and the directory, on a first
/// start). Refuses a foreign or damaged directory with an error naming the file.
pub(super) fn check_identity(
    path: &Path,
    cluster_name: &str,
    node_id: u64,
) -> Result<IdentityInfo, NodeError> {
    let meta_path = path.join(IDENTITY_FILE);
    if meta_path.exists() {
        let mut have = read_record(&meta_path)?;
        if have.format_version != FORMAT_VERSION {
            return Err(NodeError::data_dir(
                &meta_path,
                format!(
                    "format version {} is not {FORMAT_VERSION}, the one this build reads",
                    have.format_version
                ),
            ));
        }
        if have.cluster_name != cluster_name || have.node_id != node_id {
            return Err(NodeError::data_dir(
                &meta_path,
                format!(
                    "belongs to cluster {:?} node {}, not cluster {:?} node {} (wrong --id or data_dir?)",
                    have.cluster_name, have.node_id, cluster_name, node_id
                ),
            ));
        }
        let incarnation = match have.incarnation.clone() {
            Some(i) => i,
            None => {
                // An older build's directory: admitted as is, with an id from now on.
                let i = new_incarnation().map_err(|e| {
                    NodeError::data_dir(&meta_path, format!("cannot draw an incarnation id: {e}"))
                })?;
                have.incarnation = Some(i.clone());
                have.admitted = Some(true);
                write_record(path, &have)?;
                i
            }
        };
        return Ok(IdentityInfo {
            incarnation,
            admitted: have.admitted.unwrap_or(true),
            created: false,
            witnessed_since_creation: have.witnessed_since_creation == Some(true),
        });
    }
    if path.exists() {
        let non_empty = std::fs::read_dir(path)
            .map_err(|e| NodeError::data_dir(path, format!("cannot list the directory: {e}")))?
            .next()
            .is_some();
        if non_empty {
            return Err(NodeError::data_dir(
                path,
                format!("directory is not empty but has no {IDENTITY_FILE}: not a booking node data directory, or its identity record was lost"),
            ));
        }
    }
    std::fs::create_dir_all(path)
        .map_err(|e| NodeError::data_dir(path, format!("cannot create: {e}")))?;
    let incarnation = new_incarnation().map_err(|e| {
        NodeError::data_dir(&meta_path, format!("cannot draw an incarnation id: {e}"))
    })?;
    let want = Identity {
        format_version: FORMAT_VERSION,
        cluster_name: cluster_name.to_string(),
        node_id,
        incarnation: Some(incarnation.clone()),
        admitted: Some(false),
        witnessed_since_creation: Some(true),
    };
    // Written before sled creates anything: a crash leaves either no record
    // (fresh directory) or a whole one.
    write_record(path, &want)?;
    Ok(IdentityInfo {
        incarnation,
        admitted: false,
        created: true,
        witnessed_since_creation: true,
    })
}
