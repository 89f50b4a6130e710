//! The requests and answers of the agent's HTTP API (`agent/README.md`). Every value that
//! crosses the wire is parsed into one of these once: a release that is a safe directory
//! name, a digest that is 32 bytes, a transfer URL that is http(s) — nothing downstream
//! re-checks strings.

use std::fmt;
use std::str::FromStr;

use http::Uri;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Release;

/// `POST /v1/backups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub op_id: Uuid,
    pub release: Release,
    /// A central backup's S3 multipart upload; `None` keeps the archive on the subcloud.
    #[serde(default)]
    pub upload: Option<UploadPlan>,
}

/// S3's smallest part (every part but the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's highest part number.
pub const MAX_PARTS: u32 = 10_000;

/// How a central backup goes up: in parts of `part_size` bytes (the last one shorter), each
/// PUT to its own pre-signed UploadPart URL. The worker hands the first URLs over with the
/// request and more as the upload advances (`POST /v1/jobs/{op_id}/parts`), so none has to
/// last the whole backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadPlan {
    /// Bytes per part, [`MIN_PART_SIZE`] to [`MAX_PART_SIZE`]. The agent raises it if the
    /// data would otherwise need more than [`MAX_PARTS`] parts.
    #[serde(deserialize_with = "part_size")]
    pub part_size: u64,
    /// URLs of the first parts.
    #[serde(default)]
    pub parts: Vec<PartUrl>,
}

fn part_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let size = u64::deserialize(deserializer)?;
    if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(serde::de::Error::custom(format!(
            "part_size {size} is outside S3's part sizes ({MIN_PART_SIZE} to {MAX_PART_SIZE} bytes)"
        )))
    }
}

/// The pre-signed UploadPart URL of one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartUrl {
    /// 1 to [`MAX_PARTS`].
    #[serde(deserialize_with = "part_number")]
    pub part_number: u32,
    pub url: TransferUrl,
}

fn part_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let number = u32::deserialize(deserializer)?;
    if (1..=MAX_PARTS).contains(&number) {
        Ok(number)
    } else {
        Err(serde::de::Error::custom(format!(
            "part_number {number} is outside 1 to {MAX_PARTS}"
        )))
    }
}

/// `POST /v1/jobs/{op_id}/parts`: more part URLs for a running central backup. A URL for a
/// part that already has one replaces it (a fresher signature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartUrls {
    pub parts: Vec<PartUrl>,
}

/// `POST /v1/restores`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub op_id: Uuid,
    pub release: Release,
    /// A pre-signed `GET` URL (central backup); `None` uses the newest local backup.
    pub download_url: Option<TransferUrl>,
    /// The archive's expected SHA-256, checked before anything is extracted.
    pub sha256: Option<Sha256>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Restore,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// Where a backup's archive lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Central,
    Local,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::Central => "central",
            Location::Local => "local",
        })
    }
}

/// A job as `GET /v1/jobs/{op_id}` (and the start routes) report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub op_id: Uuid,
    pub kind: JobKind,
    pub state: JobState,
    /// 0–100; 100 once succeeded, the last value reached once failed.
    pub progress: u8,
    /// A backup's progress in bytes (all 0 for a restore, and until known).
    #[serde(default)]
    pub bytes: ByteProgress,
    /// A central backup's upload: which parts are up and which URLs the agent needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadProgress>,
    pub error: Option<String>,
    pub result: Option<JobResult>,
}

/// Where a central backup's upload stands. Parts go up one at a time, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// The part size in use (the plan's, or larger for very large data).
    pub part_size: u64,
    /// Parts 1 to `parts_uploaded` are up.
    pub parts_uploaded: u32,
    /// The highest part number the agent holds a URL for (0: none).
    pub urls_through: u32,
    /// The next part is ready but the agent has no URL for it: it waits for the worker.
    pub waiting_for_url: bool,
}

/// A backup's progress in bytes; each figure is 0 until known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteProgress {
    /// The data to archive: the sizes of the data dirs' files, known once archiving starts.
    pub total: u64,
    /// Of `total`, the bytes read into the archive so far.
    pub archived: u64,
    /// The archive's (compressed) size, known once it is written.
    pub archive: u64,
    /// Of `archive`, the bytes sent to central storage so far (central backups only).
    pub uploaded: u64,
}

/// The archive a succeeded job wrote (backup) or applied (restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub release: Release,
    /// The archive's size in bytes.
    pub size: u64,
    pub sha256: Sha256,
    pub location: Location,
    /// A central backup's parts, in order, for CompleteMultipartUpload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<UploadedPart>,
}

/// A part S3 took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    pub part_number: u32,
    /// The ETag S3 answered, as it gave it (quotes included).
    pub etag: String,
    pub size: u64,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub name: String,
    pub version: String,
}

/// Every error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A SHA-256 digest; on the wire, 64 hex digits (either case accepted, lower case written).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(pub [u8; 32]);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid sha256 {s:?}: expected 64 hex digits");
        if s.len() != 64 || !s.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(Sha256(bytes))
    }
}

impl TryFrom<String> for Sha256 {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Sha256> for String {
    fn from(value: Sha256) -> Self {
        value.to_string()
    }
}

/// An absolute `http` or `https` URL to move an archive to or from. A pre-signed URL's query
/// string is a credential, so `Display` and `Debug` show only scheme, host and path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransferUrl(Uri);

impl TransferUrl {
    /// The whole URL, query (credentials) included: for the request only, never a log line.
    pub fn uri(&self) -> &Uri {
        &self.0
    }
}

impl TryFrom<String> for TransferUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let uri: Uri = value
            .parse()
            .map_err(|_| "invalid transfer URL: not a URL".to_owned())?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(TransferUrl(uri)),
            _ => Err("invalid transfer URL: expected an absolute http or https URL".to_owned()),
        }
    }
}

impl FromStr for TransferUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransferUrl::try_from(s.to_owned())
    }
}

impl From<TransferUrl> for String {
    fn from(value: TransferUrl) -> Self {
        value.0.to_string()
    }
}

impl fmt::Display for TransferUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.scheme_str().unwrap_or("http");
        let authority = self.0.authority().map_or("", |a| a.as_str());
        write!(f, "{scheme}://{authority}{}", self.0.path())
    }
}

impl fmt::Debug for TransferUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_as_lower_case_hex() {
        let upper = "AB".repeat(32);
        let digest: Sha256 = upper.parse().expect("hex");
        assert_eq!(digest.0, [0xab; 32]);
        assert_eq!(digest.to_string(), "ab".repeat(32));
        for bad in ["ab", &"zz".repeat(32), &"é".repeat(32), &"a".repeat(65)] {
            assert!(bad.parse::<Sha256>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transfer_urls_hide_their_query() {
        let url: TransferUrl =
            "http://127.0.0.1:9324/bucket/sc1/24.09/a.tar.gz?X-Amz-Signature=secret"
                .parse()
                .expect("url");
        assert_eq!(
            url.to_string(),
            "http://127.0.0.1:9324/bucket/sc1/24.09/a.tar.gz"
        );
        assert!(!format!("{url:?}").contains("secret"));
        assert!(String::from(url).contains("X-Amz-Signature=secret"));
        for bad in ["/relative", "ftp://host/x", "not a url", "http:///x"] {
            assert!(bad.parse::<TransferUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn part_sizes_and_numbers_are_s3s() {
        let plan = |size: u64, number: u32| {
            serde_json::from_value::<UploadPlan>(serde_json::json!({
                "part_size": size,
                "parts": [{"part_number": number, "url": "http://127.0.0.1:1/b/k?partNumber=1"}],
            }))
        };
        assert!(plan(MIN_PART_SIZE, 1).is_ok());
        assert!(plan(MAX_PART_SIZE, MAX_PARTS).is_ok());
        let small = plan(MIN_PART_SIZE - 1, 1).expect_err("too small");
        assert!(
            small.to_string().contains("outside S3's part sizes"),
            "{small}"
        );
        assert!(plan(MAX_PART_SIZE + 1, 1).is_err());
        assert!(plan(MIN_PART_SIZE, 0).is_err());
        assert!(plan(MIN_PART_SIZE, MAX_PARTS + 1).is_err());
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let body = r#"{"op_id": "9f0c1d52-3a55-4d49-a8e0-0d0d7c7a3a11", "release": "24.09",
                       "upload": null, "extra": 1}"#;
        let error = serde_json::from_str::<BackupRequest>(body).expect_err("unknown field");
        assert!(
            error.to_string().contains("unknown field `extra`"),
            "{error}"
        );
    }
}
