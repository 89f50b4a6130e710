//! The agent's command line, and the checks that make its directories safe to swap: each data
//! dir exists, has a distinct name, is on the store's filesystem (a restore moves directories
//! by `rename`) and neither contains nor sits inside the store or another data dir (a backup
//! would archive itself, a restore would replace its own staging area).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::archive::MANIFEST;
use crate::tls::{TlsError, TlsFiles};
use dcbackup_protocol::SecretError;

pub const USAGE: &str = "\
usage: dcbackup-agent --name NAME --listen ADDR:PORT --data DIR [--data DIR ...] --store DIR --secret-file PATH
                      [--previous-secret-file PATH] [--cert PEM --key PEM [--client-ca PEM]]

  --name NAME          the subcloud's name; worker tokens must carry it as their audience
  --listen ADDR:PORT   where to serve (port 0 picks a free port; the first stdout line
                       says `listening on https://ADDR:PORT`, or http:// without --cert)
  --data DIR           a directory to back up and restore (repeatable)
  --store DIR          local backups and the work area; same filesystem as the data dirs
  --secret-file PATH   the HS256 key shared with the worker (at least 32 bytes)
  --previous-secret-file PATH
                       the key before the last rotation, also accepted until it is removed
  --cert PEM           serve HTTPS with this certificate chain (leaf first)
  --key PEM            the certificate's private key
  --client-ca PEM      require client certificates signed by this CA (mutual TLS)";

/// What the command line asks for, before anything on disk is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    pub data: Vec<PathBuf>,
    pub store: PathBuf,
    pub secret_file: PathBuf,
    /// The key before the last rotation: tokens signed with it are accepted too.
    pub previous_secret_file: Option<PathBuf>,
    /// HTTPS; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("data dir {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Parses the flags (without the program name); `--flag value` and `--flag=value` both work.
    pub fn from_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Config, ConfigError> {
        let usage = |message: String| ConfigError::Usage(message);
        let (mut name, mut listen, mut store, mut secret_file) = (None, None, None, None);
        let (mut previous_secret_file, mut cert, mut key, mut client_ca) = (None, None, None, None);
        let mut data = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg
                .into_string()
                .map_err(|a| usage(format!("unexpected argument {a:?}")))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(OsString::from(value)))
                }
                _ => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| usage(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--name" => {
                    let value = value()?
                        .into_string()
                        .map_err(|_| usage("--name must be UTF-8".to_owned()))?;
                    if value.is_empty() {
                        return Err(usage("--name must not be empty".to_owned()));
                    }
                    name = Some(value);
                }
                "--listen" => {
                    let value = value()?;
                    let address = value.to_str().and_then(|v| v.parse().ok()).ok_or_else(|| {
                        usage(format!(
                            "--listen {value:?} is not an ADDR:PORT socket address"
                        ))
                    })?;
                    listen = Some(address);
                }
                "--data" => data.push(PathBuf::from(value()?)),
                "--store" => store = Some(PathBuf::from(value()?)),
                "--secret-file" => secret_file = Some(PathBuf::from(value()?)),
                "--previous-secret-file" => previous_secret_file = Some(PathBuf::from(value()?)),
                "--cert" => cert = Some(PathBuf::from(value()?)),
                "--key" => key = Some(PathBuf::from(value()?)),
                "--client-ca" => client_ca = Some(PathBuf::from(value()?)),
                other => return Err(usage(format!("unknown argument {other:?}"))),
            }
        }
        let missing = |flag: &str| usage(format!("{flag} is required"));
        if data.is_empty() {
            return Err(missing("--data"));
        }
        let tls = match (cert, key, client_ca) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            (None, None, Some(_)) => {
                return Err(usage("--client-ca needs --cert and --key".to_owned()))
            }
            _ => return Err(usage("--cert and --key go together".to_owned())),
        };
        Ok(Config {
            name: name.ok_or_else(|| missing("--name"))?,
            listen: listen.ok_or_else(|| missing("--listen"))?,
            data,
            store: store.ok_or_else(|| missing("--store"))?,
            secret_file: secret_file.ok_or_else(|| missing("--secret-file"))?,
            previous_secret_file,
            tls,
        })
    }
}

/// A directory the agent backs up and restores, by its canonical path. Its `name` (the last
/// path component) is its top-level directory inside archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataDir {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
}

impl DataDir {
    /// Where the original waits, beside itself, while a restore swaps in the staged copy.
    pub(crate) fn aside(&self, op_id: Uuid) -> PathBuf {
        self.path
            .with_file_name(format!(".{}.dcbackup-old-{op_id}", self.name))
    }
}

/// Creates the store if needed and checks the data dirs against it and each other.
pub(crate) fn directories(
    data: &[PathBuf],
    store: &Path,
) -> Result<(Vec<DataDir>, PathBuf), ConfigError> {
    let store_error = |source| ConfigError::Store {
        path: store.to_owned(),
        source,
    };
    std::fs::create_dir_all(store).map_err(store_error)?;
    let store = store.canonicalize().map_err(store_error)?;
    let store_device = std::fs::metadata(&store).map_err(store_error)?.dev();

    let mut dirs: Vec<DataDir> = Vec::new();
    for given in data {
        let refuse = |reason: String| ConfigError::DataDir {
            path: given.clone(),
            reason,
        };
        let path = given.canonicalize().map_err(|e| refuse(e.to_string()))?;
        let metadata = std::fs::metadata(&path).map_err(|e| refuse(e.to_string()))?;
        if !metadata.is_dir() {
            return Err(refuse("not a directory".to_owned()));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| refuse("needs a UTF-8 last component (not /)".to_owned()))?
            .to_owned();
        if name == MANIFEST {
            return Err(refuse(format!("{MANIFEST} is reserved for the manifest")));
        }
        let parent_device = path
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.dev());
        if parent_device != Some(metadata.dev()) {
            return Err(refuse(
                "is a mount point (or its parent is unreadable): a restore renames it".to_owned(),
            ));
        }
        if metadata.dev() != store_device {
            return Err(refuse(format!(
                "not on the filesystem of the store {}: a restore moves directories by rename",
                store.display()
            )));
        }
        if path.starts_with(&store) || store.starts_with(&path) {
            return Err(refuse(format!("overlaps the store {}", store.display())));
        }
        if let Some(other) = dirs
            .iter()
            .find(|d| d.name == name || d.path.starts_with(&path) || path.starts_with(&d.path))
        {
            return Err(refuse(format!(
                "clashes with data dir {} (names must differ, dirs must not nest)",
                other.path.display()
            )));
        }
        dirs.push(DataDir { name, path });
    }
    Ok((dirs, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn parses_every_flag() {
        let config = Config::from_args(args(
            "--name sc1 --listen=127.0.0.1:0 --data /a --data=/b --store /s --secret-file /k \
             --previous-secret-file /p --cert /c.pem --key=/k.pem --client-ca /ca.pem",
        ))
        .expect("config");
        assert_eq!(
            config,
            Config {
                name: "sc1".into(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                data: vec!["/a".into(), "/b".into()],
                store: "/s".into(),
                secret_file: "/k".into(),
                previous_secret_file: Some("/p".into()),
                tls: Some(TlsFiles {
                    cert: "/c.pem".into(),
                    key: "/k.pem".into(),
                    client_ca: Some("/ca.pem".into()),
                }),
            }
        );
    }

    #[test]
    fn data_dirs_must_be_distinct_directories_apart_from_the_store() {
        let root = std::env::temp_dir().join(format!("dcbackup-agent-config-{}", Uuid::new_v4()));
        for dir in [
            "a/etc",
            "b/etc",
            "opt/nested",
            "file-parent",
            "MANIFEST.json",
        ] {
            std::fs::create_dir_all(root.join(dir)).expect("dir");
        }
        std::fs::write(root.join("file-parent/file"), "").expect("file");
        let store = root.join("store");
        let cases: [(&[&str], &str); 6] = [
            (&["a/etc", "b/etc"], "names must differ"),
            (&["opt", "opt/nested"], "dirs must not nest"),
            (&["store/inner"], "No such file"),
            (&["file-parent/file"], "not a directory"),
            (&["MANIFEST.json"], "reserved"),
            (&["missing"], "No such file"),
        ];
        for (dirs, expected) in cases {
            let data: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
            let error = directories(&data, &store).expect_err(expected).to_string();
            assert!(error.contains(expected), "{dirs:?}: {error}");
        }
        std::fs::create_dir_all(store.join("inner")).expect("dir");
        let error = directories(&[store.join("inner")], &store).expect_err("inside the store");
        assert!(error.to_string().contains("overlaps the store"), "{error}");
        let error = directories(std::slice::from_ref(&root), &store).expect_err("holds the store");
        assert!(error.to_string().contains("overlaps the store"), "{error}");

        let (dirs, canonical_store) =
            directories(&[root.join("a/etc"), root.join("opt")], &store).expect("valid");
        assert_eq!(canonical_store, store.canonicalize().expect("store"));
        let names: Vec<_> = dirs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["etc", "opt"]);
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            (
                "--name sc1 --listen 127.0.0.1:0 --store /s --secret-file /k",
                "--data is required",
            ),
            ("--name", "--name needs a value"),
            ("--listen localhost --data /a", "is not an ADDR:PORT"),
            ("--verbose", "unknown argument \"--verbose\""),
            ("--name= --data /a", "--name must not be empty"),
            ("--data /a --cert /c.pem", "--cert and --key go together"),
            ("--data /a --key /k.pem", "--cert and --key go together"),
            (
                "--data /a --client-ca /ca.pem",
                "--client-ca needs --cert and --key",
            ),
        ];
        for (line, expected) in cases {
            let error = Config::from_args(args(line)).expect_err(line).to_string();
            assert!(error.contains(expected), "{line}: {error}");
            assert!(error.contains("usage: dcbackup-agent"), "{line}");
        }
    }
}
