//! Protobuf definitions of the client API and of the internal Raft RPCs, and
//! the tonic code generated from them at build time (no system `protoc`: the
//! build uses `protoc-bin-vendored`).
//!
//! Owns: the wire format, and in [`hot`] the one conversion of the hot
//! commands and outcomes to and from their protobuf forms (shared by the
//! node and the client so the two cannot drift). Must not: hold domain
//! logic; every other domain type is converted in `raft-node` and `client`.
//!
//! Two services, in two packages so they can evolve apart:
//! - [`booking`] (`booking.v1.Booking`): what clients call. Domain payloads
//!   are JSON in `*_json` bytes fields (see `proto/booking.proto` for why),
//!   except the hot commands and outcomes, which `SubmitBatchCompact`
//!   carries as protobuf (`HotCommand`, `HotOutcome`).
//! - [`raft`] (`booking.raft.v1.Raft`): node-to-node Raft traffic; bodies are
//!   postcard-encoded openraft types. Not a public interface.
//!
//! Caveat: change the `.proto` files only additively (new fields, new RPCs);
//! other crates and older nodes read them.

/// The client API, `booking.v1`.
pub mod booking {
    tonic::include_proto!("booking.v1");
}

pub mod hot;

/// The internal Raft RPCs, `booking.raft.v1`.
pub mod raft {
    tonic::include_proto!("booking.raft.v1");
}

/// Most requests in one `SubmitBatch`; a longer batch is refused whole with
/// INVALID_ARGUMENT. Each request is then admitted to the leader's proposer
/// on its own, under the proposer's own queue bound.
pub const SUBMIT_BATCH_MAX: usize = 1_024;

/// The largest gRPC message either service decodes or encodes, in bytes.
/// Bounds memory per request; big enough for a batch of log entries and for
/// one snapshot chunk (raft-node sends snapshots in smaller chunks).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
