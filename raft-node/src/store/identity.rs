//! The identity record of a node's data directory (`booking-node.meta`): which
//! cluster and node the directory belongs to, and the on-disk format version.
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
}

/// Checks the record of `path` (creating it, and the directory, on a first
/// start). Refuses a foreign or damaged directory with an error naming the file.
pub(super) fn check_identity(
    path: &Path,
    cluster_name: &str,
    node_id: u64,
) -> Result<(), NodeError> {
    let meta_path = path.join(IDENTITY_FILE);
    let want = Identity {
        format_version: FORMAT_VERSION,
        cluster_name: cluster_name.to_string(),
        node_id,
    };
    if meta_path.exists() {
        let text = std::fs::read(&meta_path).map_err(|e| {
            NodeError::data_dir(&meta_path, format!("cannot read the identity record: {e}"))
        })?;
        let have: Identity = serde_json::from_slice(&text).map_err(|e| {
            NodeError::data_dir(&meta_path, format!("identity record does not decode: {e}"))
        })?;
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
        return Ok(());
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
    // Written to a temporary name, synced, then renamed: a crash leaves either
    // no record (fresh directory) or a whole one.
    let tmp = path.join(format!("{IDENTITY_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(&want).map_err(|e| NodeError::Internal(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &meta_path)?;
        std::fs::File::open(path)?.sync_all()
    };
    write().map_err(|e| {
        NodeError::data_dir(&meta_path, format!("cannot write the identity record: {e}"))
    })
}
