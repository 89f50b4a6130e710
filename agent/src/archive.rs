//! The backup archive: a tar.gz holding each data dir under its own name (`etc/...`) and, as
//! its last entry, `MANIFEST.json`, which lists every directory, file (size and SHA-256) and
//! symlink. Writing reads each file once, hashing it as it goes into the archive, so the
//! manifest describes exactly the bytes archived even while files change. Extraction goes
//! into a fresh staging directory and trusts nothing: every entry path must be relative and
//! free of `.`/`..`, nothing is written through a symlink the archive made, and the result
//! must match the manifest entry for entry before anyone touches a data dir.
//!
//! Sparse files go in as old-GNU sparse entries (their data segments only) and come back
//! with their holes.
//!
//! Restored: contents, symlinks, permission bits (`rwx` and sticky) and file modification
//! times. Not restored: owners, setuid/setgid bits (an owner-less setuid file would be a
//! privilege escalation), extended attributes; sockets, FIFOs and devices are refused.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use crate::config::DataDir;
use crate::digest::Hashing;
use crate::progress::{Meter, Metered};
use dcbackup_protocol::{Release, Sha256};

/// The manifest's name, at the archive's root.
pub(crate) const MANIFEST: &str = "MANIFEST.json";
const MANIFEST_FORMAT: u32 = 1;
/// A manifest lists paths and digests; one this large is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// The permission bits restored (see the module docs for why not setuid/setgid).
const RESTORED_MODE_BITS: u32 = 0o1777;

/// What an archive says it holds. Paths use `/` and start with a data dir's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) subcloud: String,
    pub(crate) release: Release,
    /// Seconds since the Unix epoch.
    pub(crate) created_at: u64,
    /// The data dir names, in `--data` order.
    pub(crate) roots: Vec<String>,
    pub(crate) dirs: Vec<String>,
    pub(crate) files: Vec<FileEntry>,
    pub(crate) symlinks: Vec<SymlinkEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) sha256: Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SymlinkEntry {
    pub(crate) path: String,
    pub(crate) target: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} changed while it was being backed up; try again", path.display())]
    Changed { path: PathBuf },
    #[error("{}: cannot back up a {kind}", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("{}: only UTF-8 names can be listed in the manifest", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{0}")]
    Output(io::Error),
    #[error("the archive is unreadable (corrupted or not a tar.gz): {0}")]
    Corrupt(io::Error),
    #[error("cannot extract {path}: {source}")]
    Extract { path: String, source: io::Error },
    #[error("unsafe entry path {0:?}: only relative paths without '.' or '..' are allowed")]
    UnsafePath(String),
    #[error("entry {path:?} is outside the data dirs ({roots})")]
    OutsideRoots { path: String, roots: String },
    #[error("entry {0:?} appears twice")]
    Duplicate(String),
    #[error("entry {path:?} lies under {parent:?}, which is not a directory")]
    UnderNonDirectory { path: String, parent: String },
    #[error("entry {path:?} is a {kind}, which a backup never holds")]
    UnexpectedEntry { path: String, kind: String },
    #[error("the archive has no {MANIFEST}")]
    NoManifest,
    #[error("the archive's {MANIFEST} is invalid: {0}")]
    BadManifest(String),
    #[error("the archive is a backup of release {archive}, not {requested}")]
    WrongRelease {
        archive: Release,
        requested: Release,
    },
    #[error("the archive holds the data dirs [{archive}] but this agent has [{agent}]")]
    RootsDiffer { archive: String, agent: String },
    #[error("the archive does not match its manifest at {path:?}: {what}")]
    Mismatch { path: String, what: String },
}

/// What the archive looks like on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) size: u64,
    pub(crate) sha256: Sha256,
}

/// Who made a backup and for which release, for its manifest.
pub(crate) struct Origin<'a> {
    pub(crate) subcloud: &'a str,
    pub(crate) release: &'a Release,
}

/// One thing found under a data dir.
struct Item {
    path: String,
    source: PathBuf,
    metadata: fs::Metadata,
    kind: ItemKind,
}

enum ItemKind {
    Dir,
    File,
    Symlink(String),
}

/// Streams the archive of `dirs` into `out` (a file, or the parts of an upload) and hands
/// `out` back. `progress` makes the meter, given the bytes of file content to read, that
/// advances as they are read.
pub(crate) fn create<W: Write>(
    dirs: &[DataDir],
    origin: Origin<'_>,
    out: W,
    progress: impl FnOnce(u64) -> Meter,
) -> Result<(W, Written), ArchiveError> {
    let mut items = Vec::new();
    for dir in dirs {
        walk(dir.name.clone(), dir.path.clone(), &mut items)?;
    }
    let total = items
        .iter()
        .filter(|i| matches!(i.kind, ItemKind::File))
        .map(|i| i.metadata.len())
        .sum();
    let mut meter = progress(total);

    let at_out = ArchiveError::Output;
    // Small writes (tar headers, gzip's output) go out in larger blocks.
    let gzip = GzEncoder::new(Hashing::new(BufWriter::new(out)), Compression::default());
    let mut builder = tar::Builder::new(gzip);
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        subcloud: origin.subcloud.to_owned(),
        release: origin.release.clone(),
        created_at: std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        roots: dirs.iter().map(|d| d.name.clone()).collect(),
        dirs: Vec::new(),
        files: Vec::new(),
        symlinks: Vec::new(),
    };
    for item in items {
        let mut header = Header::new_gnu();
        header.set_mode(item.metadata.mode() & 0o7777);
        header.set_mtime(u64::try_from(item.metadata.mtime()).unwrap_or(0));
        header.set_uid(u64::from(item.metadata.uid()));
        header.set_gid(u64::from(item.metadata.gid()));
        header.set_size(0);
        match item.kind {
            ItemKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                builder
                    .append_data(&mut header, &item.path, io::empty())
                    .map_err(at_out)?;
                manifest.dirs.push(item.path);
            }
            ItemKind::Symlink(target) => {
                header.set_entry_type(EntryType::Symlink);
                builder
                    .append_link(&mut header, &item.path, &target)
                    .map_err(at_out)?;
                manifest.symlinks.push(SymlinkEntry {
                    path: item.path,
                    target,
                });
            }
            ItemKind::File => {
                let at_source = |source| ArchiveError::Io {
                    path: item.source.clone(),
                    source,
                };
                let file = File::open(&item.source).map_err(at_source)?;
                // The size in the header must be the size archived: take it from the open
                // file, and read no more than that even if the file grows meanwhile.
                let opened = file.metadata().map_err(at_source)?;
                let size = opened.len();
                let sha256 = match sparse_segments(&file, &opened).map_err(at_source)? {
                    None => {
                        header.set_size(size);
                        header.set_entry_type(EntryType::Regular);
                        let mut reader = Hashing::new(Metered {
                            inner: file.take(size),
                            meter: &mut meter,
                        });
                        builder
                            .append_data(&mut header, &item.path, &mut reader)
                            .map_err(at_out)?;
                        if reader.count() != size {
                            return Err(ArchiveError::Changed { path: item.source });
                        }
                        reader.finish().1
                    }
                    Some(segments) => {
                        let extensions = sparse_header(&mut header, &segments, size);
                        let mut reader = Sparse::new(file, segments, size, &mut meter);
                        builder
                            .append_data(
                                &mut header,
                                &item.path,
                                extensions.as_slice().chain(&mut reader),
                            )
                            .map_err(at_out)?;
                        reader
                            .finish()
                            .ok_or(ArchiveError::Changed { path: item.source })?
                    }
                };
                manifest.files.push(FileEntry {
                    path: item.path,
                    size,
                    sha256,
                });
            }
        }
    }
    let document = serde_json::to_vec_pretty(&manifest).map_err(|e| at_out(e.into()))?;
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_mtime(manifest.created_at);
    header.set_size(document.len() as u64);
    builder
        .append_data(&mut header, MANIFEST, document.as_slice())
        .map_err(at_out)?;

    let hashing = builder
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(at_out)?;
    let (buffered, sha256, size) = hashing.finish();
    let out = buffered.into_inner().map_err(|e| at_out(e.into_error()))?;
    Ok((out, Written { size, sha256 }))
}

/// The data segments (offset, length) of a sparse file, in order, or `None` when the file is
/// not sparse (every block allocated, or the filesystem cannot tell). A file that ends in a
/// hole ends with an empty segment at its size, as GNU tar writes it.
fn sparse_segments(file: &File, metadata: &fs::Metadata) -> io::Result<Option<Vec<(u64, u64)>>> {
    use rustix::fs::{seek, SeekFrom};
    let size = metadata.len();
    if size == 0 || metadata.blocks().saturating_mul(512) >= size {
        return Ok(None);
    }
    let mut segments = Vec::new();
    let mut offset = 0;
    while offset < size {
        let data = match seek(file, SeekFrom::Data(offset)) {
            Ok(data) if data < size => data,
            // No data after `offset`: the rest is a hole.
            Ok(_) | Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let hole = seek(file, SeekFrom::Hole(data))?.min(size);
        segments.push((data, hole - data));
        offset = hole;
    }
    if segments
        .last()
        .is_none_or(|(at, length)| at + length < size)
    {
        segments.push((size, 0));
    }
    Ok(Some(segments))
}

/// Makes `header` an old-GNU sparse entry of a `size`-byte file holding `segments`; returns
/// the extension headers for the segments beyond the four the header itself holds. They go
/// between the header and the data (tar's "old GNU" sparse format, which the tar crate reads).
fn sparse_header(header: &mut Header, segments: &[(u64, u64)], size: u64) -> Vec<u8> {
    header.set_entry_type(EntryType::GNUSparse);
    header.set_size(segments.iter().map(|(_, length)| length).sum());
    let mut extensions = Vec::new();
    if let Some(gnu) = header.as_gnu_mut() {
        gnu.set_real_size(size);
        for (slot, (at, length)) in gnu.sparse.iter_mut().zip(segments) {
            slot.set_offset(*at);
            slot.set_length(*length);
        }
        gnu.set_is_extended(segments.len() > gnu.sparse.len());
        let mut rest = segments.iter().skip(gnu.sparse.len()).peekable();
        while rest.peek().is_some() {
            let mut extension = tar::GnuExtSparseHeader::new();
            for slot in extension.sparse.iter_mut() {
                match rest.next() {
                    Some((at, length)) => {
                        slot.set_offset(*at);
                        slot.set_length(*length);
                    }
                    None => break,
                }
            }
            extension.set_is_extended(rest.peek().is_some());
            extensions.extend_from_slice(extension.as_bytes());
        }
    }
    extensions
}

/// Reads a sparse file's data segments, one after the other, as its archive entry holds
/// them; hashes the whole file (its holes as the zeros they read as) for the manifest.
struct Sparse<'a> {
    file: File,
    segments: std::vec::IntoIter<(u64, u64)>,
    size: u64,
    /// Bytes of the current segment still to read.
    left: u64,
    /// How much of the file is hashed (and metered).
    hashed: u64,
    digest: Hashing<()>,
    meter: &'a mut Meter,
    /// A segment read short: the file changed.
    short: bool,
}

/// Zeros to hash a hole with, a chunk at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl<'a> Sparse<'a> {
    fn new(file: File, segments: Vec<(u64, u64)>, size: u64, meter: &'a mut Meter) -> Self {
        Sparse {
            file,
            segments: segments.into_iter(),
            size,
            left: 0,
            hashed: 0,
            digest: Hashing::new(()),
            meter,
            short: false,
        }
    }

    /// Hashes (and meters) the hole up to `offset`.
    fn hole_to(&mut self, offset: u64) {
        while self.hashed < offset {
            let n = (offset - self.hashed).min(ZEROS.len() as u64);
            // `n` is at most `ZEROS.len()`.
            self.digest.update(&ZEROS[..n as usize]);
            self.meter.advance(n);
            self.hashed += n;
        }
    }

    /// The file's SHA-256, or `None` if it changed while it was read.
    fn finish(mut self) -> Option<Sha256> {
        self.hole_to(self.size);
        (!self.short && self.left == 0).then(|| self.digest.finish().1)
    }
}

impl Read for Sparse<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            let Some((at, length)) = self.segments.next() else {
                return Ok(0);
            };
            self.hole_to(at);
            io::Seek::seek(&mut self.file, io::SeekFrom::Start(at))?;
            self.left = length;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            // The file shrank: the entry comes out short and `finish` says so, as for a
            // file that is not sparse.
            self.short = true;
            return Ok(0);
        }
        self.digest.update(&buf[..n]);
        self.meter.advance(n as u64);
        self.hashed += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Lists `source` and everything under it, each directory before its contents, in name order.
fn walk(path: String, source: PathBuf, items: &mut Vec<Item>) -> Result<(), ArchiveError> {
    let at_source = |source_error, at: &Path| ArchiveError::Io {
        path: at.to_owned(),
        source: source_error,
    };
    let metadata = fs::symlink_metadata(&source).map_err(|e| at_source(e, &source))?;
    let file_type = metadata.file_type();
    let kind = if file_type.is_dir() {
        ItemKind::Dir
    } else if file_type.is_file() {
        ItemKind::File
    } else if file_type.is_symlink() {
        let target = fs::read_link(&source).map_err(|e| at_source(e, &source))?;
        let target = target.to_str().ok_or_else(|| ArchiveError::NotUtf8 {
            path: source.clone(),
        })?;
        ItemKind::Symlink(target.to_owned())
    } else {
        return Err(ArchiveError::Unsupported {
            path: source,
            kind: "socket, FIFO or device",
        });
    };
    let is_dir = matches!(kind, ItemKind::Dir);
    items.push(Item {
        path: path.clone(),
        source: source.clone(),
        metadata,
        kind,
    });
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(&source)
            .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(|e| at_source(e, &source))?;
        names.sort();
        for name in names {
            let child = source.join(&name);
            let name = name
                .to_str()
                .ok_or_else(|| ArchiveError::NotUtf8 {
                    path: child.clone(),
                })?
                .to_owned();
            walk(format!("{path}/{name}"), child, items)?;
        }
    }
    Ok(())
}

/// One path of an archive or a manifest, as compared between the two.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File { size: u64, sha256: Sha256 },
    Symlink { target: String },
}

impl Node {
    fn describe(&self) -> String {
        match self {
            Node::Dir => "a directory".to_owned(),
            Node::File { size, sha256 } => format!("a file of {size} bytes, sha256 {sha256}"),
            Node::Symlink { target } => format!("a symlink to {target:?}"),
        }
    }
}

/// Extracts the archive `reader` streams (a local file, or a download as it arrives) into
/// `staging` (created here, empty) and checks it against its manifest: same release, same data
/// dirs as `roots`, same entries. Reads the gzip stream to its end, not past it.
pub(crate) fn extract(
    reader: impl Read,
    staging: &Path,
    roots: &[&str],
    release: &Release,
) -> Result<Manifest, ArchiveError> {
    let at = |path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Io { path, source }
    };
    fs::create_dir_all(staging).map_err(at(staging))?;
    let mut tar = tar::Archive::new(GzDecoder::new(reader));

    let mut found: BTreeMap<String, Node> = BTreeMap::new();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut manifest: Option<Vec<u8>> = None;
    for entry in tar.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let path = safe_path(&entry.path_bytes())?;
        let extract_error = |source| ArchiveError::Extract {
            path: path.clone(),
            source,
        };
        if path == MANIFEST {
            if manifest.is_some() || entry.header().entry_type() != EntryType::Regular {
                return Err(ArchiveError::BadManifest(
                    "not a single regular file".into(),
                ));
            }
            if entry.size() > MAX_MANIFEST_BYTES {
                return Err(ArchiveError::BadManifest("too large".into()));
            }
            let mut document = Vec::new();
            entry
                .read_to_end(&mut document)
                .map_err(ArchiveError::Corrupt)?;
            manifest = Some(document);
            continue;
        }
        check_placement(&path, roots, &found)?;
        let dest = staging.join(&path);
        let mode = entry.header().mode().map_err(ArchiveError::Corrupt)? & RESTORED_MODE_BITS;
        let node = match entry.header().entry_type() {
            EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(extract_error)?;
                dir_modes.push((dest, mode));
                Node::Dir
            }
            kind @ (EntryType::Regular | EntryType::GNUSparse) => {
                create_parent(&dest).map_err(extract_error)?;
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .map_err(extract_error)?;
                let mut writer = Hashing::new(Holes {
                    file,
                    sparse: kind == EntryType::GNUSparse,
                    skipped: 0,
                });
                copy_entry(&mut entry, &mut writer).map_err(|e| match e {
                    Copy::Read(e) => ArchiveError::Corrupt(e),
                    Copy::Write(e) => extract_error(e),
                })?;
                let (holes, sha256, size) = writer.finish();
                let file = holes.finish().map_err(extract_error)?;
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(extract_error)?;
                let mtime = entry.header().mtime().map_err(ArchiveError::Corrupt)?;
                file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
                    .map_err(extract_error)?;
                Node::File { size, sha256 }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .and_then(|t| String::from_utf8(t.into_owned()).ok())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| ArchiveError::UnexpectedEntry {
                        path: path.clone(),
                        kind: "symlink without a UTF-8 target".into(),
                    })?;
                create_parent(&dest).map_err(extract_error)?;
                std::os::unix::fs::symlink(&target, &dest).map_err(extract_error)?;
                Node::Symlink { target }
            }
            other => {
                return Err(ArchiveError::UnexpectedEntry {
                    path,
                    kind: format!("{other:?} entry"),
                })
            }
        };
        found.insert(path, node);
    }
    // The tar reader stops at the end-of-archive blocks; reading on to the end of the gzip
    // stream is what checks its CRC, so a corrupted tail is not taken for a good archive.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(ArchiveError::Corrupt)?;

    let manifest: Manifest = serde_json::from_slice(&manifest.ok_or(ArchiveError::NoManifest)?)
        .map_err(|e| ArchiveError::BadManifest(e.to_string()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(ArchiveError::BadManifest(format!(
            "format {} is not {MANIFEST_FORMAT}",
            manifest.format
        )));
    }
    if &manifest.release != release {
        return Err(ArchiveError::WrongRelease {
            archive: manifest.release,
            requested: release.clone(),
        });
    }
    let mut archive_roots: Vec<&str> = manifest.roots.iter().map(String::as_str).collect();
    let mut agent_roots = roots.to_vec();
    archive_roots.sort_unstable();
    agent_roots.sort_unstable();
    if archive_roots != agent_roots {
        return Err(ArchiveError::RootsDiffer {
            archive: manifest.roots.join(", "),
            agent: roots.join(", "),
        });
    }
    compare(&listed(&manifest)?, &found)?;
    for root in roots {
        if found.get(*root) != Some(&Node::Dir) {
            return Err(ArchiveError::Mismatch {
                path: (*root).to_owned(),
                what: "a data dir must be a directory".into(),
            });
        }
    }
    // Children first (a path sorts after its parent), so a read-only directory is locked only
    // once everything inside it is in place.
    dir_modes.sort();
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&dir, Permissions::from_mode(mode)).map_err(at(&dir))?;
    }
    Ok(manifest)
}

/// The entry path as a `/`-separated relative path of plain components.
fn safe_path(raw: &[u8]) -> Result<String, ArchiveError> {
    let text = String::from_utf8_lossy(raw);
    // Directory entries may end in '/'.
    let trimmed = text.strip_suffix('/').unwrap_or(&text);
    let plain = |c: &str| !c.is_empty() && c != "." && c != "..";
    if std::str::from_utf8(raw).is_err() || trimmed.is_empty() || !trimmed.split('/').all(plain) {
        return Err(ArchiveError::UnsafePath(text.into_owned()));
    }
    Ok(trimmed.to_owned())
}

/// Refuses an entry outside the data dirs, a second entry for one path, and an entry under
/// anything the archive made that is not a directory: writing beneath a symlink it made
/// would write wherever the symlink points.
fn check_placement(
    path: &str,
    roots: &[&str],
    found: &BTreeMap<String, Node>,
) -> Result<(), ArchiveError> {
    let root = path.split('/').next().unwrap_or_default();
    if !roots.contains(&root) {
        return Err(ArchiveError::OutsideRoots {
            path: path.to_owned(),
            roots: roots.join(", "),
        });
    }
    if found.contains_key(path) {
        return Err(ArchiveError::Duplicate(path.to_owned()));
    }
    let mut ancestor = path;
    while let Some((parent, _)) = ancestor.rsplit_once('/') {
        if found.get(parent).is_some_and(|n| *n != Node::Dir) {
            return Err(ArchiveError::UnderNonDirectory {
                path: path.to_owned(),
                parent: parent.to_owned(),
            });
        }
        ancestor = parent;
    }
    Ok(())
}

/// Which side of a copy failed: reading the archive means it is corrupt, writing means the
/// staging area is in trouble (a full disk, say).
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

fn copy_entry(from: &mut impl Read, to: &mut impl Write) -> Result<(), Copy> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        to.write_all(&buffer[..n]).map_err(Copy::Write)?;
    }
}

/// Writes a restored file; for a sparse one, runs of zeros (the holes, as the tar reader
/// hands them over) are skipped rather than written, so they stay holes.
struct Holes {
    file: File,
    sparse: bool,
    /// Zeros skipped since the last write.
    skipped: u64,
}

impl Holes {
    /// The file, its length set past a final hole.
    fn finish(mut self) -> io::Result<File> {
        if self.skipped > 0 {
            let end = io::Seek::stream_position(&mut self.file)? + self.skipped;
            self.file.set_len(end)?;
        }
        Ok(self.file)
    }
}

impl Write for Holes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A slice comparison is a memcmp, quick even in unoptimised builds.
        if self.sparse && buf.len() <= ZEROS.len() && buf == &ZEROS[..buf.len()] {
            self.skipped += buf.len() as u64;
            return Ok(buf.len());
        }
        if self.skipped > 0 {
            let skip = i64::try_from(self.skipped).map_err(io::Error::other)?;
            io::Seek::seek(&mut self.file, io::SeekFrom::Current(skip))?;
            self.skipped = 0;
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent),
        None => Ok(()),
    }
}

/// The manifest as nodes by path; a path listed twice makes it invalid.
fn listed(manifest: &Manifest) -> Result<BTreeMap<String, Node>, ArchiveError> {
    let dirs = manifest.dirs.iter().map(|p| (p, Node::Dir));
    let files = manifest.files.iter().map(|f| {
        (
            &f.path,
            Node::File {
                size: f.size,
                sha256: f.sha256,
            },
        )
    });
    let symlinks = manifest.symlinks.iter().map(|s| {
        (
            &s.path,
            Node::Symlink {
                target: s.target.clone(),
            },
        )
    });
    let mut nodes = BTreeMap::new();
    for (path, node) in dirs.chain(files).chain(symlinks) {
        if nodes.insert(path.clone(), node).is_some() {
            return Err(ArchiveError::BadManifest(format!(
                "{path:?} is listed twice"
            )));
        }
    }
    Ok(nodes)
}

fn compare(
    listed: &BTreeMap<String, Node>,
    found: &BTreeMap<String, Node>,
) -> Result<(), ArchiveError> {
    let mismatch = |path: &str, what: String| ArchiveError::Mismatch {
        path: path.to_owned(),
        what,
    };
    for (path, expected) in listed {
        match found.get(path) {
            None => return Err(mismatch(path, "listed but not in the archive".into())),
            Some(actual) if actual != expected => {
                return Err(mismatch(
                    path,
                    format!(
                        "listed as {}, archived as {}",
                        expected.describe(),
                        actual.describe()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    match found.keys().find(|path| !listed.contains_key(*path)) {
        Some(path) => Err(mismatch(path, "in the archive but not listed".into())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dcbackup-agent-{name}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn release() -> Release {
        "24.09".parse().expect("release")
    }

    fn open(path: &Path) -> io::BufReader<File> {
        io::BufReader::new(File::open(path).expect("archive"))
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "etc/../../x",
            "etc//x",
            "./etc",
            "",
            "/",
        ] {
            assert!(safe_path(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(safe_path(&[b'e', 0xff]).is_err());
        assert_eq!(safe_path(b"etc/x/").expect("dir"), "etc/x");
    }

    #[test]
    fn nothing_is_written_under_an_archived_symlink() {
        let mut found = BTreeMap::new();
        found.insert("etc".to_owned(), Node::Dir);
        found.insert(
            "etc/link".to_owned(),
            Node::Symlink {
                target: "/tmp".into(),
            },
        );
        let error = check_placement("etc/link/evil", &["etc"], &found).expect_err("refused");
        assert!(
            matches!(error, ArchiveError::UnderNonDirectory { .. }),
            "{error}"
        );
        let error = check_placement("opt/x", &["etc"], &found).expect_err("refused");
        assert!(
            matches!(error, ArchiveError::OutsideRoots { .. }),
            "{error}"
        );
        let error = check_placement("etc/link", &["etc"], &found).expect_err("refused");
        assert!(matches!(error, ArchiveError::Duplicate(_)), "{error}");
        assert!(check_placement("etc/a/b", &["etc"], &found).is_ok());
    }

    #[test]
    fn round_trip_keeps_contents_links_and_modes() {
        let root = scratch("archive");
        let etc = root.join("etc");
        fs::create_dir_all(etc.join("sub/deeper")).expect("dirs");
        fs::write(etc.join("a.conf"), b"a = 1\n").expect("file");
        fs::write(etc.join("sub/empty"), b"").expect("file");
        fs::write(etc.join("sub/deeper/bin"), (0..=255u8).collect::<Vec<_>>()).expect("file");
        fs::set_permissions(etc.join("a.conf"), Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink("a.conf", etc.join("link")).expect("symlink");
        let dirs = vec![DataDir {
            name: "etc".into(),
            path: etc.clone(),
        }];
        let out = root.join("backup.tar.gz");
        let progress = Progress::default();
        let (_, written) = create(
            &dirs,
            Origin {
                subcloud: "sc1",
                release: &release(),
            },
            File::create(&out).expect("archive file"),
            |total| progress.step(0, 90, total),
        )
        .expect("archive");
        assert_eq!(progress.get(), 90);
        assert_eq!(
            crate::digest::file(&out).expect("digest"),
            (written.sha256, written.size)
        );

        let staging = root.join("staging");
        let manifest = extract(open(&out), &staging, &["etc"], &release()).expect("extract");
        assert_eq!(manifest.subcloud, "sc1");
        assert_eq!(manifest.dirs, ["etc", "etc/sub", "etc/sub/deeper"]);
        assert_eq!(manifest.files.len(), 3);
        assert_eq!(
            fs::read(staging.join("etc/sub/deeper/bin")).expect("file"),
            (0..=255u8).collect::<Vec<_>>()
        );
        assert_eq!(
            fs::read_link(staging.join("etc/link")).expect("link"),
            Path::new("a.conf")
        );
        let mode = fs::metadata(staging.join("etc/a.conf"))
            .expect("meta")
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let wrong = "22.12".parse().expect("release");
        let error =
            extract(open(&out), &root.join("s2"), &["etc"], &wrong).expect_err("wrong release");
        assert!(
            matches!(error, ArchiveError::WrongRelease { .. }),
            "{error}"
        );
        let error = extract(open(&out), &root.join("s3"), &["etc", "opt"], &release())
            .expect_err("other roots");
        assert!(matches!(error, ArchiveError::RootsDiffer { .. }), "{error}");
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn a_truncated_gzip_stream_is_corrupt() {
        let root = scratch("truncated");
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, "etc", io::empty())
            .expect("entry");
        let compressed = gzip(&tar.into_inner().expect("tar"));
        let archive = root.join("cut.tar.gz");
        fs::write(&archive, &compressed[..compressed.len() - 6]).expect("write");
        let error = extract(open(&archive), &root.join("staging"), &["etc"], &release())
            .expect_err("truncated");
        assert!(matches!(error, ArchiveError::Corrupt(_)), "{error}");
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
