//! What the dcbackup worker and the subcloud agent share, and nothing else: the agent
//! protocol's requests and answers (`agent/README.md`), the worker tokens it carries, the TLS
//! both ends build from PEM files, and the JSON log format. Kept apart from both so the
//! library (`dcbackup`) links no archive or server code, and the agent no AWS SDK.
//!
//! # Layout
//!
//! - [`messages`]: the HTTP+JSON bodies ([`BackupRequest`], [`JobView`], ...) and the values
//!   they carry, each parsed once ([`Sha256`], [`TransferUrl`], S3's part limits).
//! - [`release`]: [`Release`], the one release type of dcbackup (the API's, the store's and
//!   the agent's).
//! - [`token`]: the shared [`Secret`] and [`mint_worker_token`]; the agent verifies tokens
//!   against the same constants.
//! - [`tls`]: PEM certificates, keys and CA bundles for rustls on aws-lc.
//! - [`logs`]: the JSON log lines every process writes.

pub mod logs;
pub mod messages;
pub mod release;
pub mod tls;
pub mod token;

pub use messages::{
    BackupRequest, ByteProgress, ErrorBody, Health, JobKind, JobResult, JobState, JobView,
    Location, PartUrl, PartUrls, RestoreRequest, Sha256, TransferUrl, UploadPlan, UploadProgress,
    UploadedPart, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE,
};
pub use release::{InvalidRelease, Release};
pub use token::{
    mint_worker_token, MintError, Secret, SecretError, ISSUER, MAX_TOKEN_LIFETIME,
    MIN_SECRET_BYTES, WORKER_SUBJECT,
};
