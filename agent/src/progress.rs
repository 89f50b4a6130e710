//! A job's progress, 0–100 and (for a backup) in bytes, written by the job's steps (some on
//! blocking threads) and read by `GET /v1/jobs/{op_id}` without a lock.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use dcbackup_protocol::ByteProgress;

#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    percent: Arc<AtomicU8>,
    bytes: Arc<Bytes>,
}

/// The counters behind [`ByteProgress`].
#[derive(Debug, Default)]
struct Bytes {
    total: AtomicU64,
    archived: AtomicU64,
    archive: AtomicU64,
    uploaded: AtomicU64,
}

/// Which byte counter a meter moves.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Archived,
}

impl Progress {
    pub(crate) fn get(&self) -> u8 {
        self.percent.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, percent: u8) {
        self.percent.store(percent.min(100), Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self) -> ByteProgress {
        let b = &self.bytes;
        ByteProgress {
            total: b.total.load(Ordering::Relaxed),
            archived: b.archived.load(Ordering::Relaxed),
            archive: b.archive.load(Ordering::Relaxed),
            uploaded: b.uploaded.load(Ordering::Relaxed),
        }
    }

    /// A meter for one step that moves progress from `from` to `to` as `total` units are done.
    pub(crate) fn step(&self, from: u8, to: u8, total: u64) -> Meter {
        self.set(from);
        Meter {
            progress: self.clone(),
            from,
            to,
            total,
            done: 0,
            counter: None,
        }
    }

    /// [`Progress::step`] over the `total` bytes of data to archive, counted as archived.
    pub(crate) fn archiving(&self, from: u8, to: u8, total: u64) -> Meter {
        self.bytes.total.store(total, Ordering::Relaxed);
        self.bytes.archived.store(0, Ordering::Relaxed);
        Meter {
            counter: Some(Counter::Archived),
            ..self.step(from, to, total)
        }
    }

    /// The archive is written: `size` bytes.
    pub(crate) fn archive_written(&self, size: u64) {
        self.bytes.archive.store(size, Ordering::Relaxed);
    }

    /// Of the archive, `bytes` are uploaded.
    pub(crate) fn set_uploaded(&self, bytes: u64) {
        self.bytes.uploaded.store(bytes, Ordering::Relaxed);
    }
}

/// Progress through one step of a job.
#[derive(Debug)]
pub(crate) struct Meter {
    progress: Progress,
    from: u8,
    to: u8,
    total: u64,
    done: u64,
    counter: Option<Counter>,
}

impl Meter {
    pub(crate) fn advance(&mut self, units: u64) {
        self.done = self.done.saturating_add(units).min(self.total);
        let span = u64::from(self.to.saturating_sub(self.from));
        let reached = match self.total {
            0 => 0,
            total => span * self.done / total,
        };
        // `reached <= span <= 100`, so the sum fits.
        self.progress.set(self.from + reached as u8);
        let bytes = &self.progress.bytes;
        match self.counter {
            Some(Counter::Archived) => bytes.archived.store(self.done, Ordering::Relaxed),
            None => {}
        }
    }
}

/// A reader that advances a meter by the bytes it reads.
pub(crate) struct Metered<'a, R> {
    pub(crate) inner: R,
    pub(crate) meter: &'a mut Meter,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_spans_its_range() {
        let progress = Progress::default();
        let mut meter = progress.step(40, 90, 200);
        assert_eq!(progress.get(), 40);
        meter.advance(100);
        assert_eq!(progress.get(), 65);
        meter.advance(1000);
        assert_eq!(progress.get(), 90);
        progress.step(90, 100, 0).advance(5);
        assert_eq!(progress.get(), 90);
        assert_eq!(
            progress.bytes(),
            ByteProgress::default(),
            "plain steps count no bytes"
        );
    }

    #[test]
    fn archiving_and_uploading_count_bytes() {
        let progress = Progress::default();
        let mut archiving = progress.archiving(0, 50, 1000);
        archiving.advance(400);
        assert_eq!(
            progress.bytes(),
            ByteProgress {
                total: 1000,
                archived: 400,
                archive: 0,
                uploaded: 0
            }
        );
        archiving.advance(600);
        progress.set_uploaded(120);
        progress.archive_written(300);
        assert_eq!(
            progress.bytes(),
            ByteProgress {
                total: 1000,
                archived: 1000,
                archive: 300,
                uploaded: 120
            }
        );
        assert_eq!(progress.get(), 50);
    }
}
