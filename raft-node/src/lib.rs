pub mod error;
pub mod metrics;
pub mod store;
pub mod types;
pub mod watch;
pub use error::NodeError;
