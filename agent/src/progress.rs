//! A job's progress, 0–100, written by the job's steps (some on blocking threads) and read by
//! `GET /v1/jobs/{op_id}` without a lock.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub(crate) struct Progress(Arc<AtomicU8>);

impl Progress {
    pub(crate) fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, percent: u8) {
        self.0.store(percent.min(100), Ordering::Relaxed);
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
        }
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
    }
}
