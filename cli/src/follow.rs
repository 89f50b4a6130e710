//! `--wait`: follows each started operation to its end. Every tick reads the subclouds (a
//! group's members in one request) and sees where each one's state stands; a subcloud whose
//! slot no longer holds our operation is done, and its operation record says how it ended.
//! On a terminal the progress is one bar per subcloud plus a summary line for a group (on
//! stderr); elsewhere one plain line per change. Ctrl-C stops the waiting, never the
//! operations.

use crate::api::Api;
use crate::args::{Target, Wait};
use crate::backup::Kind;
use crate::error::CliError;
use crate::output::{items, text, Printer, View};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::collections::hash_map::{Entry, HashMap};
use std::io::IsTerminal;
use std::time::Duration;

/// A subcloud whose operation this request started.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: u64,
    pub name: String,
    pub op_id: String,
}

/// Polls in a row that may fail (API briefly unreachable) before waiting gives up.
const TOLERATED_FAILURES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    Succeeded,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

struct Tracked {
    started: Started,
    state: String,
    result: Outcome,
    error: Option<String>,
    bar: Option<ProgressBar>,
}

/// After a 204 (a delete every target accepted, which names no operation), each target's
/// delete: the one holding its slot, or, if it already ended, its newest delete record.
pub async fn resolve_deletes(api: &Api, target: &Target) -> Result<Vec<Started>, CliError> {
    let subclouds = match (&target.subcloud, &target.group) {
        (Some(s), _) => vec![api.get(&["subclouds", s]).await?.body],
        (None, Some(g)) => items(
            &api.get(&["subcloud-groups", g, "subclouds"]).await?.body,
            "subclouds",
        )
        .to_vec(),
        (None, None) => Vec::new(),
    };
    let mut started = Vec::new();
    for sc in subclouds {
        let Some(id) = sc["id"].as_u64() else {
            continue;
        };
        let name = text(&sc["name"]);
        let op_id = if sc["operation"]["kind"] == "delete" {
            sc["operation"]["id"].as_str().map(str::to_owned)
        } else {
            let history = api
                .get(&["subclouds", &id.to_string(), "operations"])
                .await?
                .body;
            items(&history, "operations")
                .iter()
                .find(|op| op["kind"] == "delete")
                .and_then(|op| op["id"].as_str().map(str::to_owned))
        };
        if let Some(op_id) = op_id {
            started.push(Started { id, name, op_id });
        }
    }
    Ok(started)
}

/// The display: bars on a terminal, plain lines elsewhere.
struct Display {
    multi: MultiProgress,
    summary: Option<ProgressBar>,
    terminal: bool,
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.cyan} {prefix} [{bar:12.cyan/blue}] {msg} {elapsed:.dim}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

fn finished_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {msg}").expect("a valid template")
}

impl Display {
    fn new(kind: Kind, group: Option<&str>, tracked: &mut [Tracked]) -> Display {
        let terminal = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let rows = console::Term::stderr().size().0 as usize;
        // More subclouds than rows would scroll the bars away: the summary alone then.
        let per_subcloud = terminal && tracked.len() + 3 <= rows;
        let width = tracked
            .iter()
            .map(|t| t.started.name.len())
            .max()
            .unwrap_or(0);
        if per_subcloud {
            for t in tracked.iter_mut() {
                let bar = multi.add(ProgressBar::new(kind.steps().len() as u64 + 1));
                bar.set_style(running_style());
                bar.set_prefix(format!("{:<width$}", t.started.name));
                bar.set_message(t.state.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                t.bar = Some(bar);
            }
        }
        let summary = group.filter(|_| terminal).map(|g| {
            let bar = multi.add(ProgressBar::new(tracked.len() as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30.green/blue}] {pos}/{len} done {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("group {g}"));
            bar
        });
        Display {
            multi,
            summary,
            terminal,
        }
    }

    fn changed(&self, kind: Kind, t: &Tracked) {
        match (&t.bar, t.result) {
            (Some(bar), Outcome::Running) => {
                let step = kind.steps().iter().position(|s| *s == t.state).unwrap_or(0);
                bar.set_position(step as u64);
                bar.set_message(t.state.clone());
            }
            (Some(bar), result) => {
                bar.set_style(finished_style());
                bar.finish_with_message(outcome_line(t, result));
            }
            (None, Outcome::Running) if !self.terminal => {
                eprintln!("{}: {}", t.started.name, t.state);
            }
            (None, Outcome::Running) => {}
            (None, result) if self.terminal => {
                // No bar of its own (too many subclouds): a line above the summary.
                if result == Outcome::Failed {
                    let _ = self.multi.println(format!(
                        "{} {}",
                        t.started.name,
                        outcome_line(t, result)
                    ));
                }
            }
            (None, result) => eprintln!("{}: {}", t.started.name, plain_outcome(t, result)),
        }
    }

    fn summarize(&self, tracked: &[Tracked]) {
        let Some(summary) = &self.summary else { return };
        let count = |r: Outcome| tracked.iter().filter(|t| t.result == r).count();
        let (failed, running) = (count(Outcome::Failed), count(Outcome::Running));
        summary.set_position((tracked.len() - running) as u64);
        summary.set_message(format!("({failed} failed, {running} running)"));
    }

    /// Ends every bar: finished ones stay as they are, unfinished ones say so.
    fn close(&self, tracked: &[Tracked], why: &str) {
        for t in tracked {
            if let (Some(bar), Outcome::Running) = (&t.bar, t.result) {
                bar.set_style(finished_style());
                bar.finish_with_message(format!("{} ({why})", t.state));
            }
        }
        if let Some(summary) = &self.summary {
            summary.finish();
        }
    }
}

/// `<state> (<result>)`, or the result alone when the state is empty (a delete leaves no
/// backup-status), then the error of a failure.
fn plain_outcome(t: &Tracked, result: Outcome) -> String {
    let mut line = if t.state.is_empty() {
        result.as_str().to_owned()
    } else {
        format!("{} ({})", t.state, result.as_str())
    };
    if let (Some(e), Outcome::Failed) = (&t.error, result) {
        line.push_str(&format!(": {e}"));
    }
    line
}

fn outcome_line(t: &Tracked, result: Outcome) -> String {
    let (mark, text) = match result {
        Outcome::Succeeded => ("✔", console::style(t.state.clone()).green()),
        _ => ("✘", console::style(t.state.clone()).red()),
    };
    let mut line = format!(
        "{} {}",
        console::style(mark).for_stderr(),
        text.for_stderr()
    );
    if t.state.is_empty() {
        line.push_str(result.as_str());
    }
    if let (Some(e), Outcome::Failed) = (&t.error, result) {
        line.push_str(&format!(": {e}"));
    }
    line
}

/// Follows `started` to their end; prints the outcome table (or JSON/YAML/ids) on stdout.
/// Ok only if every target succeeded; else `Partial` (or `Interrupted` on Ctrl-C).
pub async fn follow(
    api: &Api,
    printer: &Printer,
    kind: Kind,
    group: Option<&str>,
    started: Vec<Started>,
    refused: Vec<Value>,
    wait: &Wait,
) -> Result<(), CliError> {
    let mut tracked: Vec<Tracked> = started
        .into_iter()
        .map(|started| Tracked {
            started,
            state: kind.steps()[0].to_owned(),
            result: Outcome::Running,
            error: None,
            bar: None,
        })
        .collect();
    // Polled once before anything is drawn: tokio installs its SIGINT handler on the first
    // poll, and a Ctrl-C before that would kill the process (exit 1, not 130).
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let interrupted_early = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(ctrl_c.as_mut(), cx).is_ready())
    })
    .await;
    let display = Display::new(kind, group, &mut tracked);
    display.summarize(&tracked);
    let deadline = wait.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut failures = 0;
    let mut stopped: Option<CliError> = interrupted_early.then_some(CliError::Interrupted);
    let mut first = true;
    while stopped.is_none() && tracked.iter().any(|t| t.result == Outcome::Running) {
        let pause = if first {
            Duration::ZERO
        } else {
            wait.poll_interval
        };
        first = false;
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut ctrl_c => {
                stopped = Some(CliError::Interrupted);
                break;
            }
            _ = timeout => {
                let left = tracked.iter().filter(|t| t.result == Outcome::Running).count();
                let after = humantime::format_duration(wait.timeout.unwrap_or_default());
                stopped = Some(CliError::Partial(format!(
                    "timed out after {after} with {left} subcloud(s) still running; the operations go on"
                )));
                break;
            }
        }
        match tick(api, kind, group, &mut tracked, &display).await {
            Ok(()) => failures = 0,
            Err(e @ CliError::Unreachable(_)) if failures + 1 < TOLERATED_FAILURES => {
                failures += 1;
                if !display.terminal {
                    eprintln!("{} (retrying)", e);
                }
            }
            Err(e) => {
                display.close(&tracked, "no longer followed");
                return Err(e);
            }
        }
        display.summarize(&tracked);
    }
    let why = match &stopped {
        Some(CliError::Interrupted) => "interrupted; still running",
        _ => "timed out; still running",
    };
    display.close(&tracked, why);
    print_outcome(printer, kind, &tracked, &refused);
    if let Some(e) = stopped {
        return Err(e);
    }
    let failed = tracked
        .iter()
        .filter(|t| t.result == Outcome::Failed)
        .count()
        + refused.len();
    if failed > 0 {
        let total = tracked.len() + refused.len();
        return Err(CliError::Partial(format!(
            "{failed} of {total} subcloud(s) did not succeed"
        )));
    }
    Ok(())
}

/// One look at the subclouds still running.
async fn tick(
    api: &Api,
    kind: Kind,
    group: Option<&str>,
    tracked: &mut [Tracked],
    display: &Display,
) -> Result<(), CliError> {
    let mut seen: HashMap<u64, Value> = HashMap::new();
    if let Some(g) = group {
        let members = api.get(&["subcloud-groups", g, "subclouds"]).await?.body;
        for sc in items(&members, "subclouds") {
            if let Some(id) = sc["id"].as_u64() {
                seen.insert(id, sc.clone());
            }
        }
    }
    for t in tracked.iter_mut().filter(|t| t.result == Outcome::Running) {
        let id = t.started.id;
        if let Entry::Vacant(slot) = seen.entry(id) {
            // Not (or no longer) in the group: read it alone; gone means only the record tells.
            match api.get(&["subclouds", &id.to_string()]).await {
                Ok(reply) => {
                    slot.insert(reply.body);
                }
                Err(CliError::Refused { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let subcloud = seen.get(&id);
        let ours = subcloud.is_some_and(|sc| sc["operation"]["id"] == t.started.op_id.as_str());
        if ours {
            let state = text(&subcloud.expect("checked")[kind.status_key()]);
            if state != t.state {
                t.state = state;
                display.changed(kind, t);
            }
            continue;
        }
        let record = api
            .get(&["subcloud-backup", "operations", &t.started.op_id])
            .await?
            .body;
        let result = match record["state"].as_str() {
            Some("succeeded") => Outcome::Succeeded,
            Some("failed") => Outcome::Failed,
            // The slot was released just before the record was closed: next tick.
            _ => continue,
        };
        if let Some(sc) = subcloud {
            t.state = text(&sc[kind.status_key()]);
        }
        if result == Outcome::Failed {
            // The subcloud's error-description while nothing newer holds it; else the record's.
            let from_subcloud = subcloud
                .filter(|sc| sc["operation"].is_null())
                .and_then(|sc| sc["error-description"].as_str())
                .filter(|e| !e.is_empty() && *e != "No errors present");
            t.error = from_subcloud
                .or(record["error"].as_str())
                .map(str::to_owned);
        }
        t.result = result;
        display.changed(kind, t);
    }
    Ok(())
}

fn print_outcome(printer: &Printer, kind: Kind, tracked: &[Tracked], refused: &[Value]) {
    let key = kind.status_key();
    let mut rows: Vec<Value> = tracked
        .iter()
        .map(|t| {
            json!({
                "id": t.started.id,
                "name": t.started.name,
                "operation": t.started.op_id,
                "result": t.result.as_str(),
                key: t.state,
                "error-description": t.error,
            })
        })
        .collect();
    for r in refused {
        let result = if r["status"] == "failed" {
            "failed"
        } else {
            "skipped"
        };
        rows.push(json!({
            "id": r["id"],
            "name": r["name"],
            "operation": null,
            "result": result,
            key: null,
            "error-description": r["reason"],
        }));
    }
    let mut table = printer.table(["name", "operation", "result", key, "error-description"]);
    for row in &rows {
        let color = match row["result"].as_str() {
            Some("succeeded") => Some(comfy_table::Color::Green),
            Some("running") => Some(comfy_table::Color::Yellow),
            _ => Some(comfy_table::Color::Red),
        };
        table.add_row(vec![
            printer.cell(text(&row["name"]), None),
            printer.cell(text(&row["operation"]), None),
            printer.cell(text(&row["result"]), color),
            printer.cell(text(&row[key]), None),
            printer.cell(text(&row["error-description"]), None),
        ]);
    }
    let ids = tracked.iter().map(|t| t.started.op_id.clone()).collect();
    let _ = printer.print(View {
        data: json!({ "kind": kind.api_name(), "subclouds": rows }),
        tables: vec![table],
        ids,
    });
}
