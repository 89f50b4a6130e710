//! `make test` builds the workspace with its dev-dependencies; `make run` builds its binaries
//! and `cargo lambda watch` its functions without them. When a dev-dependency turns on a
//! feature of a shared crate, cargo compiles that crate and everything above it twice, and on
//! a fresh clone `make run` (and the README test that starts it) spends minutes rebuilding
//! the AWS SDK. This keeps the two feature sets one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// `package version` → its feature sets (one for the target, one for build scripts and
/// proc-macros when those differ), as `cargo tree` resolves them with `edges`.
fn features(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let checkout = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "tree",
            "--workspace",
            "--locked",
            "--offline",
            "--prefix",
            "none",
        ])
        .args(["--edges", edges, "--format", "{p} [{f}]"])
        .current_dir(checkout)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut features = BTreeMap::<String, BTreeSet<String>>::new();
    for line in String::from_utf8(output.stdout)
        .expect("cargo tree prints text")
        .lines()
    {
        let Some((package, enabled)) = line.trim_end_matches(" (*)").rsplit_once(" [") else {
            continue;
        };
        // Workspace members print their path: the name and version are what matter.
        let package = package.split(" (").next().unwrap_or(package);
        features
            .entry(package.to_owned())
            .or_default()
            .insert(enabled.trim_end_matches(']').to_owned());
    }
    features
}

#[test]
fn dev_dependencies_turn_on_no_feature_the_running_stack_lacks() {
    let with_dev = features("normal,build,dev");
    let without_dev = features("normal,build");
    assert!(without_dev.len() > 100, "cargo tree listed too little");
    let differing: Vec<String> = without_dev
        .iter()
        .filter_map(|(package, features)| {
            let tested = with_dev.get(package)?;
            (tested != features).then(|| format!("{package}: {features:?} vs tests {tested:?}"))
        })
        .collect();
    assert!(
        differing.is_empty(),
        "dev-dependencies change these crates' features, so make run rebuilds them:\n{}",
        differing.join("\n")
    );
}
