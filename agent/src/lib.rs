//! The dcbackup subcloud agent: an HTTP+JSON service, one per subcloud, that the dcbackup
//! worker drives to back up and restore that subcloud's directories. A backup is a tar.gz of
//! the configured data dirs with a manifest of every file's SHA-256, streamed in parts to an
//! S3 multipart upload through pre-signed URLs (central) or kept on the subcloud (local); a
//! restore verifies an archive completely
//! before it swaps the data dirs, and puts them back if the swap fails. Requests carry
//! short-lived HS256 tokens minted by the worker with `dcbackup_protocol::mint_worker_token`.
//! The protocol is described in the crate's README; its types are in the `dcbackup-protocol`
//! crate, which the worker's library links instead of this one.

mod agent;
mod archive;
mod auth;
mod backup;
mod config;
mod digest;
mod jobs;
mod progress;
mod restore;
mod server;
mod store;
mod tls;
mod transfer;
mod upload;

pub use agent::Agent;
pub use config::{Config, ConfigError, USAGE};
pub use server::serve;
pub use tls::{TlsError, TlsFiles};
