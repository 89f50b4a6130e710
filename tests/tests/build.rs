//! `make test` builds the workspace with its dev-dependencies; `make run` builds its binaries
//! and `cargo lambda watch` its functions without them. When a dev-dependency turns on a
//! feature of a shared crate, cargo compiles that crate and everything above it twice, and on
//! a fresh clone `make run` (and the README test that starts it) spends minutes rebuilding
//! the AWS SDK. The same happens when a command selects a package with `-p`: cargo resolves
//! that package's features alone. This keeps the feature sets one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// `package version` → its feature sets (one for the target, one for build scripts and
/// proc-macros when those differ), as `cargo tree` resolves them for the packages `selection`
/// names (`--workspace`, or `-p NAME`) with `edges`.
fn features(selection: &[&str], edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let checkout = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(selection)
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
    let with_dev = features(&["--workspace"], "normal,build,dev");
    let without_dev = features(&["--workspace"], "normal,build");
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

/// The packages the stack's debug-profile cargo commands select with `-p`/`--package` in `text`
/// (`cargo build` and `cargo run` lines; release and bench profiles build apart anyway).
fn selected_packages(text: &str) -> BTreeSet<String> {
    let mut packages = BTreeSet::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let cargo_build = words
            .windows(2)
            .any(|w| w[0] == "cargo" && matches!(w[1], "build" | "run"));
        if !cargo_build || words.iter().any(|w| *w == "--release" || *w == "--profile") {
            continue;
        }
        for pair in words.windows(2) {
            if matches!(pair[0], "-p" | "--package") {
                packages.insert(pair[1].to_owned());
            }
        }
    }
    packages
}

#[test]
fn the_stacks_cargo_commands_resolve_the_workspaces_features() {
    let checkout = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // make run builds every binary with the whole workspace's features; `make token` and the
    // other targets run them. With `-p dcbackup-dev`, make token once compiled ~70 crates again
    // (two minutes on a fresh clone, inside the README test).
    let mut packages = BTreeSet::new();
    for file in ["Makefile", "tools/run-local"] {
        let text = std::fs::read_to_string(format!("{checkout}/{file}")).expect(file);
        packages.extend(selected_packages(&text));
    }
    let workspace = features(&["--workspace"], "normal,build");
    let differing: Vec<String> = packages
        .iter()
        .flat_map(|package| {
            let alone = features(&["-p", package], "normal,build");
            alone
                .into_iter()
                .filter(|(dependency, set)| workspace.get(dependency) != Some(set))
                .map(|(dependency, set)| {
                    format!(
                        "-p {package}: {dependency} {set:?} vs the workspace's {:?}",
                        workspace.get(&dependency)
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        differing.is_empty(),
        "a command selects a package whose features differ from the workspace's, so it compiles \
         them again (select by --bin instead):\n{}",
        differing.join("\n")
    );
}

#[test]
fn selected_packages_are_read_from_debug_cargo_commands_only() {
    let text = "\tcargo run --quiet -p dcbackup-dev -- mint-token\n\
                cargo build --release -p subcloud-backup-create\n\
                cargo run --profile perf -p dcbackup-bench\n\
                cargo build --package dcbackup-agent\n\
                echo -p not-cargo\n";
    assert_eq!(
        selected_packages(text),
        BTreeSet::from(["dcbackup-dev".to_owned(), "dcbackup-agent".to_owned()])
    );
}
