//! Backup schedules (SPEC §5): a target, the create options, a cron expression in an IANA
//! time zone, an optional start window and a retention count. When a schedule is due is
//! computed here, once, from its cron and zone: croner evaluates the expression on chrono-tz
//! wall-clock times, so a time that occurs twice (clocks back) fires once and a time that
//! does not occur (clocks forward) fires at the next valid instant.

use super::{Invalid, Name, OpId, OpOptions};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A cron expression (5 fields, or an alias such as `@daily`) in a time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl CronSpec {
    /// Parses both; each error names its field (`cron`, `timezone`).
    pub fn parse(cron: &str, timezone: &str) -> Result<CronSpec, Invalid> {
        let text = cron.trim();
        let aliased = text.starts_with('@');
        if !aliased && text.split_whitespace().count() != 5 {
            return Err(Invalid::field(
                "cron",
                "must have 5 fields (minute hour day-of-month month day-of-week) or be an alias such as @daily",
            ));
        }
        let cron: croner::Cron = text
            .parse()
            .map_err(|e: croner::errors::CronError| Invalid::field("cron", e))?;
        let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
            Invalid::field(
                "timezone",
                format!("{timezone:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
            )
        })?;
        Ok(CronSpec { cron, zone })
    }

    /// The first firing strictly after `after` (Unix seconds), or `None` if the expression
    /// never matches again.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let at = Utc
            .timestamp_opt(i64::try_from(after).ok()?, 0)
            .single()?
            .with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        u64::try_from(next.timestamp()).ok()
    }
}

/// What a schedule starts its backups on: one subcloud or a group, by id (resolved when the
/// schedule is written, so a rename does not break it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
pub enum ScheduleTarget {
    Subcloud(u64),
    Group(u64),
}

/// How a firing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FiringState {
    /// Operations were started (possibly none, if every subcloud was skipped).
    Fired,
    /// The scheduler came later than the start window allows: nothing was started.
    Missed,
    /// The target could not be read (deleted, or the store failed).
    Failed,
}

/// A subcloud a firing did not start, and why (busy, not valid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// The last firing of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// The due time fired (Unix seconds).
    pub due_at: u64,
    /// When the scheduler handled it (Unix seconds).
    pub ran_at: u64,
    pub state: FiringState,
    #[serde(default)]
    pub op_ids: Vec<OpId>,
    #[serde(default)]
    pub accepted: usize,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: u64,
    pub name: Name,
    pub target: ScheduleTarget,
    /// The create options (`local_only`, `registry_images`, `backup_values`).
    pub options: OpOptions,
    pub cron: String,
    pub timezone: String,
    /// Minutes after the due time within which a late firing still runs; none: always runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_window: Option<u64>,
    /// Keep the newest N central backups per subcloud made by this schedule; 0 keeps all.
    pub retain: u64,
    pub enabled: bool,
    /// The next due time (Unix seconds); none while disabled or if it never fires again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    pub created_at: String,
    pub updated_at: String,
}

impl Schedule {
    /// The largest `retain` accepted.
    pub const MAX_RETAIN: u64 = 1000;
    /// The longest start window accepted: a week, in minutes.
    pub const MAX_START_WINDOW: u64 = 7 * 24 * 60;

    pub fn spec(&self) -> Result<CronSpec, Invalid> {
        CronSpec::parse(&self.cron, &self.timezone)
    }

    /// Whether a firing due at `due` handled at `now` is too late for the start window.
    pub fn missed(&self, due: u64, now: u64) -> bool {
        self.start_window
            .is_some_and(|minutes| now > due.saturating_add(minutes * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp() as u64
    }

    #[test]
    fn bad_cron_and_zone_name_their_field() {
        let e = CronSpec::parse("61 * * * *", "UTC").unwrap_err();
        assert!(e.0.contains("'cron'"), "{e}");
        let e = CronSpec::parse("* * * * * *", "UTC").unwrap_err();
        assert!(e.0.contains("'cron'") && e.0.contains("5 fields"), "{e}");
        let e = CronSpec::parse("0 2 * * *", "Mars/Olympus").unwrap_err();
        assert!(e.0.contains("'timezone'"), "{e}");
        assert!(CronSpec::parse("@daily", "Europe/Berlin").is_ok());
    }

    #[test]
    fn aliases_and_zones() {
        let daily = CronSpec::parse("@daily", "Europe/Berlin").unwrap();
        // Midnight in Berlin (CET, UTC+1) is 23:00 UTC.
        assert_eq!(
            daily.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-10T23:00:00Z"))
        );
    }

    #[test]
    fn a_wall_clock_time_that_does_not_occur_fires_at_the_next_valid_instant() {
        // 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist.
        let spec = CronSpec::parse("30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            spec.next_after(at("2026-03-07T08:00:00Z")),
            Some(at("2026-03-08T07:00:00Z")),
            "03:00 EDT, the first valid instant after the gap"
        );
        assert_eq!(
            spec.next_after(at("2026-03-08T07:00:00Z")),
            Some(at("2026-03-09T06:30:00Z")),
            "then 02:30 EDT the day after"
        );
    }

    #[test]
    fn a_wall_clock_time_that_occurs_twice_fires_once() {
        // 2026-11-01 in New York: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice.
        let spec = CronSpec::parse("30 1 * * *", "America/New_York").unwrap();
        let first = at("2026-11-01T05:30:00Z"); // 01:30 EDT
        assert_eq!(spec.next_after(at("2026-11-01T04:00:00Z")), Some(first));
        assert_eq!(
            spec.next_after(first),
            Some(at("2026-11-02T06:30:00Z")),
            "not 01:30 EST the same night"
        );
    }

    #[test]
    fn start_window() {
        let mut s = Schedule {
            id: 1,
            name: Name::parse("name", "n").unwrap(),
            target: ScheduleTarget::Group(1),
            options: OpOptions::default(),
            cron: "@hourly".into(),
            timezone: "UTC".into(),
            start_window: Some(10),
            retain: 0,
            enabled: true,
            next_run: None,
            last_run: None,
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert!(!s.missed(1000, 1000 + 600));
        assert!(s.missed(1000, 1000 + 601));
        s.start_window = None;
        assert!(!s.missed(1000, 1_000_000));
    }
}
