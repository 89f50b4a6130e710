//! The agent's own corner of the disk. Local backups live in
//! `<store>/backups/<release>/<op_id>.tar.gz`, each with its digest beside it in
//! `<op_id>.sha256` (`sha256sum` format, so `sha256sum -c` checks it by hand). An archive
//! counts as a backup only once both are in place: the digest is written first and the
//! archive renamed in last. `<store>/work/` holds what jobs are writing, downloading or
//! staging; whatever is left there belongs to a job that no longer exists, so it is cleared
//! when the agent starts.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::archive::Written;
use dcbackup_protocol::{Release, Sha256};

const ARCHIVE_SUFFIX: &str = ".tar.gz";
const DIGEST_SUFFIX: &str = ".sha256";

#[derive(Debug)]
pub(crate) struct Store {
    backups: PathBuf,
    work: PathBuf,
}

/// A complete local backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalBackup {
    pub(crate) archive: PathBuf,
    pub(crate) sha256: Sha256,
}

impl Store {
    /// Opens the store at `root` (a canonical, existing directory).
    pub(crate) fn open(root: &Path) -> io::Result<Store> {
        let store = Store {
            backups: root.join("backups"),
            work: root.join("work"),
        };
        fs::create_dir_all(&store.backups)?;
        if store.work.exists() {
            remove_tree(&store.work)?;
        }
        fs::create_dir_all(&store.work)?;
        Ok(store)
    }

    /// A path in the work area for `op_id`, removed again when the guard drops.
    pub(crate) fn scratch(&self, op_id: Uuid, suffix: &str) -> Scratch {
        Scratch(self.work.join(format!("{op_id}.{suffix}")))
    }

    /// Moves a finished archive in as the local backup of `release`, then removes the older
    /// ones: a release keeps one local backup, and never none while a new one is written.
    pub(crate) fn keep(
        &self,
        release: &Release,
        op_id: Uuid,
        archive: &Path,
        written: &Written,
    ) -> io::Result<PathBuf> {
        let dir = self.backups.join(release.as_str());
        fs::create_dir_all(&dir)?;
        let archive_name = format!("{op_id}{ARCHIVE_SUFFIX}");
        let digest_name = format!("{op_id}{DIGEST_SUFFIX}");
        let partial = dir.join(format!(".{digest_name}.partial"));
        fs::write(&partial, format!("{}  {archive_name}\n", written.sha256))?;
        fs::rename(&partial, dir.join(&digest_name))?;
        let kept = dir.join(&archive_name);
        fs::rename(archive, &kept)?;
        fs::File::open(&dir)?.sync_all()?;
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name.ends_with(ARCHIVE_SUFFIX) || name.ends_with(DIGEST_SUFFIX);
            if ours && name != archive_name && name != digest_name {
                remove_file(&dir.join(name))?;
            }
        }
        Ok(kept)
    }

    /// The newest complete local backup of `release`.
    pub(crate) fn newest(&self, release: &Release) -> io::Result<Option<LocalBackup>> {
        let dir = self.backups.join(release.as_str());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut newest: Option<(std::time::SystemTime, LocalBackup)> = None;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(ARCHIVE_SUFFIX)) else {
                continue;
            };
            let Some(sha256) = read_digest(&dir.join(format!("{stem}{DIGEST_SUFFIX}")))? else {
                continue;
            };
            let modified = entry.metadata()?.modified()?;
            if newest.as_ref().is_none_or(|(at, _)| modified > *at) {
                let archive = entry.path();
                newest = Some((modified, LocalBackup { archive, sha256 }));
            }
        }
        Ok(newest.map(|(_, backup)| backup))
    }

    /// Removes every local backup of `release`; how many archives there were.
    pub(crate) fn delete(&self, release: &Release) -> io::Result<usize> {
        let dir = self.backups.join(release.as_str());
        let archives = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(ARCHIVE_SUFFIX))
                .count(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        remove_tree(&dir)?;
        Ok(archives)
    }
}

/// The digest in a `sha256sum`-format file; `None` if there is no such file.
fn read_digest(path: &Path) -> io::Result<Option<Sha256>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let digest = text.split_whitespace().next().unwrap_or_default();
    digest.parse().map(Some).map_err(|e: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a file or a whole tree, even one holding read-only directories (a restored tree
/// keeps its modes, and without root a `0555` directory cannot be emptied).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.is_dir() {
        return remove_file(path);
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path)?;
    fs::remove_dir_all(path)
}

fn make_writable(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// A work-area path that is removed (file or tree) when dropped, whatever the job's outcome.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = remove_tree(&self.0) {
            tracing::warn!(path = %self.0.display(), %error, "cannot remove work file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(byte: u8) -> Written {
        Written {
            size: 1,
            sha256: Sha256([byte; 32]),
        }
    }

    #[test]
    fn keeps_one_backup_per_release() {
        let root = std::env::temp_dir().join(format!("dcbackup-agent-store-{}", Uuid::new_v4()));
        fs::create_dir_all(&root).expect("root");
        let store = Store::open(&root).expect("store");
        let release: Release = "24.09".parse().expect("release");
        assert_eq!(store.newest(&release).expect("list"), None);

        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        for (op_id, byte) in [(first, 1), (second, 2)] {
            let scratch = store.scratch(op_id, "tar.gz");
            fs::write(scratch.path(), [byte]).expect("archive");
            store
                .keep(&release, op_id, scratch.path(), &written(byte))
                .expect("keep");
            assert!(!scratch.path().exists(), "moved, not copied");
        }
        let newest = store.newest(&release).expect("list").expect("a backup");
        assert_eq!(newest.sha256, Sha256([2; 32]));
        assert!(newest.archive.ends_with(format!("24.09/{second}.tar.gz")));
        let names: Vec<_> = fs::read_dir(root.join("backups/24.09"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "only the newest archive and its digest: {names:?}"
        );

        assert_eq!(store.delete(&release).expect("delete"), 1);
        assert_eq!(store.newest(&release).expect("list"), None);
        assert_eq!(store.delete(&release).expect("delete again"), 0);

        let leftover = store.scratch(Uuid::new_v4(), "staging");
        fs::create_dir_all(leftover.path().join("etc")).expect("dir");
        fs::set_permissions(leftover.path(), fs::Permissions::from_mode(0o555)).expect("chmod");
        std::mem::forget(leftover);
        Store::open(&root).expect("reopen");
        assert_eq!(fs::read_dir(root.join("work")).expect("work").count(), 0);
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
