//! One home for each name (#12): outside the module that defines it, the product's code
//! (`shared/src`, `functions/`) holds no string literal of a stored attribute name, of a
//! subcloud state, or of a DynamoDB expression. Attribute names live in
//! `shared/src/store/attributes.rs`, states in `shared/src/domain/state.rs`, and expressions
//! are written only by `shared/src/store/expr.rs` (from the attribute constants). Unit-test
//! modules (`#[cfg(test)]`) are exempt: a test may spell out what it expects.

use std::path::{Path, PathBuf};

const ATTRIBUTES_HOME: &str = "shared/src/store/attributes.rs";
const STATES_HOME: &str = "shared/src/domain/state.rs";
const EXPRESSIONS_HOME: &str = "shared/src/store/expr.rs";
/// dcmanager's wire format and the API's request fields spell dcmanager's keys (`group_id`,
/// `max_parallel_subclouds`, …), some of which the store also uses as attribute names: the
/// same word in another vocabulary, with its own home.
const WIRE_HOMES: [&str; 2] = ["shared/src/wire.rs", "shared/src/api/"];
/// Words of another enumeration that a state also spells: dcmanager's sync status.
const NOT_STATES: [(&str, &str); 1] = [("shared/src/wire.rs", "unknown")];

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The string literals of Rust source outside `#[cfg(test)]` items, with their line.
fn literals(source: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = source.chars().collect();
    let mut found = Vec::new();
    let (mut i, mut line, mut depth) = (0, 1, 0usize);
    // While skipping a `#[cfg(test)]` item: the depth its body opened at.
    let mut skipping: Option<usize> = None;
    let mut pending_test = false;
    let at = |i: usize, text: &str| chars[i..].iter().take(text.len()).copied().eq(text.chars());
    while i < chars.len() {
        let c = chars[i];
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if at(i, "/*") {
            while i < chars.len() && !at(i, "*/") {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
            continue;
        }
        if at(i, "#[cfg(test)]") {
            pending_test = true;
            i += "#[cfg(test)]".len();
            continue;
        }
        // Any other attribute (`#[serde(rename_all = "kebab-case")]`): words of the
        // compiler's and derives' languages, not the product's.
        if at(i, "#[") || at(i, "#![") {
            let mut brackets = 0;
            while i < chars.len() {
                match chars[i] {
                    '[' => brackets += 1,
                    ']' => {
                        brackets -= 1;
                        if brackets == 0 {
                            break;
                        }
                    }
                    '\n' => line += 1,
                    _ => {}
                }
                i += 1;
            }
            continue;
        }
        // A raw string: r"…", r#"…"#, br"…".
        let raw = if at(i, "br") {
            i + 2
        } else if c == 'r' {
            i + 1
        } else {
            0
        };
        let starts_raw =
            raw > 0 && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) && {
                let mut j = raw;
                while j < chars.len() && chars[j] == '#' {
                    j += 1;
                }
                j < chars.len() && chars[j] == '"'
            };
        if starts_raw {
            let mut j = raw;
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let start_line = line;
            let mut text = String::new();
            j += 1;
            while j < chars.len() && !at(j, &close) {
                line += usize::from(chars[j] == '\n');
                text.push(chars[j]);
                j += 1;
            }
            if skipping.is_none() {
                found.push((start_line, text));
            }
            i = j + close.len();
            continue;
        }
        if c == '"' {
            let start_line = line;
            let mut text = String::new();
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    text.push(chars[j]);
                    j += 1;
                }
                line += usize::from(chars[j] == '\n');
                text.push(chars[j]);
                j += 1;
            }
            if skipping.is_none() {
                found.push((start_line, text));
            }
            i = j + 1;
            continue;
        }
        // A char literal ('"', '\'', 'x'), not a lifetime.
        if c == '\'' {
            if at(i + 1, "\\") {
                // Past the escaped character, to the closing quote.
                let mut j = i + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            if i + 2 < chars.len() && chars[i + 2] == '\'' {
                i += 3;
                continue;
            }
        }
        match c {
            '\n' => line += 1,
            '{' => {
                if pending_test && skipping.is_none() {
                    skipping = Some(depth);
                    pending_test = false;
                }
                depth += 1;
            }
            '}' => {
                depth -= 1;
                if skipping == Some(depth) {
                    skipping = None;
                }
            }
            // `#[cfg(test)] use …;` or a unit struct: an item without a body.
            ';' if pending_test && skipping.is_none() => pending_test = false,
            _ => {}
        }
        i += 1;
    }
    found
}

/// `pub const NAME: &str = "value";` values of the attributes module.
fn attribute_names(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once("&str = \""))
        .filter_map(|(_, rest)| rest.strip_suffix("\";"))
        .map(str::to_owned)
        .collect()
}

/// The state words of the states module: its literals that are lowercase hyphenated words.
fn state_words(source: &str) -> Vec<String> {
    literals(source)
        .into_iter()
        .map(|(_, text)| text)
        .filter(|w| {
            !w.is_empty()
                && w.split('-')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase()))
        })
        .collect()
}

/// DynamoDB expression syntax: a function of the expression language, or a name or value
/// placeholder (`#a0`, `:op`) standing as a word.
fn expression_syntax(text: &str) -> Option<&'static str> {
    for function in [
        "attribute_exists(",
        "attribute_not_exists(",
        "if_not_exists(",
        "list_append(",
    ] {
        if text.contains(function) {
            return Some("an expression function");
        }
    }
    let bytes = text.as_bytes();
    let placeholder = bytes.windows(3).any(|w| {
        matches!(w[0], b' ' | b'(') && matches!(w[1], b':' | b'#') && w[2].is_ascii_lowercase()
    }) || (bytes.len() > 1 && bytes[0] == b':' && bytes[1].is_ascii_lowercase());
    placeholder.then_some("a placeholder")
}

/// What is wrong with each literal of `file` (relative to the checkout).
fn misplaced(file: &str, source: &str, attributes: &[String], states: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (line, text) in literals(source) {
        let place = format!("{file}:{line}: \"{text}\"");
        // Attribute names that are plain words (name, state, …) are also field names of the
        // API and of error messages: only those an English text cannot hold are checked.
        let wire = WIRE_HOMES.iter().any(|home| file.starts_with(home));
        if file != ATTRIBUTES_HOME && !wire && text.contains('_') && attributes.contains(&text) {
            wrong.push(format!(
                "{place} is an attribute name: use store::attributes"
            ));
        }
        let other_word = NOT_STATES.contains(&(file, text.as_str()));
        if file != STATES_HOME && !other_word && states.contains(&text) {
            wrong.push(format!(
                "{place} is a state: use its type in domain/state.rs"
            ));
        }
        if file != EXPRESSIONS_HOME {
            if let Some(what) = expression_syntax(&text) {
                wrong.push(format!("{place} has {what}: build it with store::Expr"));
            }
        }
    }
    wrong
}

#[test]
fn state_and_attribute_names_have_one_home() {
    let root = checkout();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect("home readable");
    let attributes = attribute_names(&read(ATTRIBUTES_HOME));
    let states = state_words(&read(STATES_HOME));
    assert!(attributes.len() > 40, "attributes found: {attributes:?}");
    assert!(
        states.contains(&"restore-prep-failed".to_owned()) && states.len() > 30,
        "states found: {states:?}"
    );
    let mut files = Vec::new();
    rust_files(&root.join("shared/src"), &mut files);
    rust_files(&root.join("functions"), &mut files);
    let mut wrong = Vec::new();
    for path in files {
        let file = path
            .strip_prefix(&root)
            .expect("under the checkout")
            .to_string_lossy()
            .into_owned();
        let source = std::fs::read_to_string(&path).expect("source readable");
        wrong.extend(misplaced(&file, &source, &attributes, &states));
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_sees_what_it_must_and_skips_tests() {
    let source = r####"
        const A: &str = "op_id = :op";
        let c = '"'; let d = '\''; fn f<'a>(x: &'a str) {}
        let raw = r#"attribute_exists(#a0)"#;
        #[serde(rename_all = "kebab-case")]
        // "in a comment"
        #[cfg(test)]
        mod tests { fn t() { let x = "restoring"; } }
        let after = "restore-failed";
    "####;
    let found: Vec<String> = literals(source).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        found,
        ["op_id = :op", "attribute_exists(#a0)", "restore-failed"]
    );
    let attributes = vec!["op_id".to_owned()];
    let states = vec!["restore-failed".to_owned(), "restoring".to_owned()];
    let wrong = misplaced("x.rs", source, &attributes, &states);
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
    assert!(misplaced(
        "x.rs",
        r#"let m = "Subcloud sc1: not found";"#,
        &attributes,
        &states
    )
    .is_empty());
}
