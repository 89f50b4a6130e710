//! Route policy in the oslo.policy check-string language dcmanager operators already write
//! (`(role:admin or role:operator) and project_name:admin`, `rule:NAME`, `not`, `@`, `!`).
//! Check strings are parsed once, at start, into expressions; dcmanager's default rules are
//! built in and an operator's file may override or add rules. Everything that can be wrong with
//! a rule — syntax, a `rule:` cycle — fails the start with the file, the rule and the offending
//! text; a rule that does not exist at all simply denies.
//!
//! This module loads rules and evaluates them for a [`Principal`]; the check-string parser is
//! `policy/parser.rs`, the rule names and dcmanager's defaults are [`rules`].

mod parser;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Principal;
use parser::{parse, Expr};
use rules::DEFAULT_RULES;

pub use parser::ParseError;

/// A named set of parsed rules.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: BTreeMap<String, Expr>,
}

impl Policy {
    /// dcmanager's default rules.
    pub fn defaults() -> Policy {
        Self::build(&PolicySource::Defaults, BTreeMap::new(), DEFAULT_RULES)
            .expect("the built-in rules parse and have no cycle")
    }

    /// The defaults with the rules of a YAML or JSON file (`.json`) merged over them.
    pub fn with_overrides_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let overrides = read_rules_file(path)?;
        Self::build(
            &PolicySource::File(path.to_owned()),
            Self::defaults().rules,
            overrides,
        )
    }

    /// Exactly these rules, without the defaults.
    pub fn parse_rules<K, V>(rules: impl IntoIterator<Item = (K, V)>) -> Result<Policy, PolicyError>
    where
        K: Into<String>,
        V: AsRef<str>,
    {
        Self::build(&PolicySource::Rules, BTreeMap::new(), rules)
    }

    fn build<K, V>(
        source: &PolicySource,
        mut rules: BTreeMap<String, Expr>,
        checks: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Policy, PolicyError>
    where
        K: Into<String>,
        V: AsRef<str>,
    {
        for (name, check) in checks {
            let name = name.into();
            let expr = parse(check.as_ref()).map_err(|error| PolicyError::Parse {
                source_name: source.clone(),
                rule: name.clone(),
                error,
            })?;
            rules.insert(name, expr);
        }
        if let Some(cycle) = find_cycle(&rules) {
            return Err(PolicyError::Cycle {
                source_name: source.clone(),
                cycle,
            });
        }
        for (name, expr) in &rules {
            for reference in expr.references() {
                if !rules.contains_key(reference) {
                    tracing::warn!(
                        %source,
                        rule = %name,
                        unknown = reference,
                        "policy rule refers to an unknown rule, which denies"
                    );
                }
            }
        }
        Ok(Policy { rules })
    }

    /// `Ok` if `rule` allows `principal`; an unknown rule denies.
    pub fn enforce(&self, rule: &str, principal: &Principal) -> Result<(), Denied> {
        let denied = || Denied {
            rule: rule.to_owned(),
        };
        let Some(expr) = self.rules.get(rule) else {
            tracing::warn!(rule, "unknown policy rule denies");
            return Err(denied());
        };
        if self.eval(expr, principal, &effective_roles(principal)) {
            Ok(())
        } else {
            tracing::info!(rule, subject = %principal.subject, "denied by policy");
            Err(denied())
        }
    }

    fn eval(&self, expr: &Expr, principal: &Principal, roles: &BTreeSet<String>) -> bool {
        match expr {
            Expr::Always => true,
            Expr::Never => false,
            Expr::Role(role) => roles.contains(role),
            Expr::Project(project) => principal.project.as_deref() == Some(project.as_str()),
            Expr::Claim { name, value } => principal
                .claim(name)
                .is_some_and(|claim| claim_matches(claim, value)),
            Expr::Rule(name) => self
                .rules
                .get(name)
                .is_some_and(|rule| self.eval(rule, principal, roles)),
            Expr::Not(inner) => !self.eval(inner, principal, roles),
            Expr::And(terms) => terms.iter().all(|t| self.eval(t, principal, roles)),
            Expr::Or(terms) => terms.iter().any(|t| self.eval(t, principal, roles)),
        }
    }
}

/// Roles compare case-insensitively, as oslo.policy's do, and imply others as Keystone's
/// defaults do: admin ⇒ member ⇒ reader, and no other chain.
fn effective_roles(principal: &Principal) -> BTreeSet<String> {
    let mut roles: BTreeSet<String> = principal.roles.iter().map(|r| r.to_lowercase()).collect();
    if roles.contains("admin") {
        roles.insert("member".to_owned());
    }
    if roles.contains("member") {
        roles.insert("reader".to_owned());
    }
    roles
}

/// A string claim equal to the value, or a list claim holding it; scalars compare as
/// oslo.policy prints them (`is_admin:True`).
fn claim_matches(claim: &Value, expected: &str) -> bool {
    match claim {
        Value::String(s) => s == expected,
        Value::Bool(b) => expected.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == expected,
        Value::Array(items) => items
            .iter()
            .any(|item| !item.is_array() && claim_matches(item, expected)),
        Value::Null | Value::Object(_) => false,
    }
}

/// The policy refuses an action; `Display` is dcmanager's 403 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Policy doesn't allow {rule} to be performed.")]
pub struct Denied {
    pub rule: String,
}

/// Where a rule came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Defaults,
    Rules,
    File(PathBuf),
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Defaults => f.write_str("built-in policy"),
            PolicySource::Rules => f.write_str("policy rules"),
            PolicySource::File(path) => write!(f, "policy file {}", path.display()),
        }
    }
}

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy file {path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{source_name}: rule `{rule}`: {error}")]
    Parse {
        source_name: PolicySource,
        rule: String,
        error: ParseError,
    },
    #[error("{source_name}: rules refer to each other in a cycle: {}", .cycle.join(" -> "))]
    Cycle {
        source_name: PolicySource,
        cycle: Vec<String>,
    },
}

fn read_rules_file(path: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| PolicyError::Format {
        path: path.to_owned(),
        reason,
    };
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    // A YAML file of nothing but comments (oslo's generated sample) overrides nothing.
    let document: Option<Value> = if json {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    match document {
        None => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(rule, check)| match check {
                Value::String(check) => Ok((rule, check)),
                other => Err(bad(format!(
                    "rule `{rule}`: the check must be a string, not {}",
                    kind(&other)
                ))),
            })
            .collect(),
        Some(other) => Err(bad(format!(
            "expected a map of rule names to check strings, not {}",
            kind(&other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The first `rule:` cycle found, as the path that closes it (`a -> b -> a`).
fn find_cycle(rules: &BTreeMap<String, Expr>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mark {
        OnPath,
        Done,
    }

    fn visit<'a>(
        name: &'a str,
        rules: &'a BTreeMap<String, Expr>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::OnPath) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|n| n.to_string()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        let (name, expr) = rules.get_key_value(name)?;
        marks.insert(name, Mark::OnPath);
        path.push(name);
        for reference in expr.references() {
            if let Some(cycle) = visit(reference, rules, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }

    let mut marks = HashMap::new();
    rules
        .keys()
        .find_map(|name| visit(name, rules, &mut marks, &mut Vec::new()))
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::rules::*;
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/auth/testdata")
            .join(name)
    }

    pub(super) fn who(roles: &[&str], project: Option<&str>) -> Principal {
        Principal::new("someone", roles.iter().copied(), project)
    }

    fn passes(check: &str, principal: &Principal) -> bool {
        Policy::parse_rules([("under_test", check)])
            .unwrap_or_else(|e| panic!("`{check}`: {e}"))
            .enforce("under_test", principal)
            .is_ok()
    }

    #[test]
    fn check_strings() {
        let cases: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("@", &[], None, true),
            ("!", &[], None, false),
            ("", &[], None, true),
            ("   ", &[], None, true),
            ("role:admin", &["admin"], None, true),
            ("role:admin", &["Admin"], None, true),
            ("role:ADMIN", &["admin"], None, true),
            ("role:admin", &["operator"], None, false),
            ("project_name:admin", &[], Some("admin"), true),
            ("project_name:admin", &[], Some("Admin"), false),
            ("project_name:admin", &[], None, false),
            // not > and > or
            ("role:a or role:b and role:c", &["a"], None, true),
            ("role:a or role:b and role:c", &["b"], None, false),
            ("role:a or role:b and role:c", &["b", "c"], None, true),
            ("role:a and role:b or role:c", &["c"], None, true),
            ("role:a and role:b or role:c", &["a"], None, false),
            ("not role:a and role:b", &["b"], None, true),
            ("not role:a and role:b", &["a", "b"], None, false),
            ("not role:a and role:b", &[], None, false),
            ("not role:a or role:b", &["a", "b"], None, true),
            ("not role:a or role:b", &["a"], None, false),
            ("not not role:a", &["a"], None, true),
            // parentheses
            ("not (role:a or role:b)", &["b"], None, false),
            ("not (role:a or role:b)", &[], None, true),
            ("(role:a or role:b) and role:c", &["a"], None, false),
            ("(role:a or role:b) and role:c", &["a", "c"], None, true),
            ("((role:a))", &["a"], None, true),
            ("(role:a)and(role:b)", &["a", "b"], None, true),
            // keywords in any case
            ("role:a AND role:b", &["a", "b"], None, true),
            ("role:a Or role:b", &["b"], None, true),
            ("NOT role:a", &[], None, true),
            ("@ and !", &[], None, false),
            ("@ or !", &[], None, true),
            ("not !", &[], None, true),
        ];
        for &(check, roles, project, expected) in cases {
            assert_eq!(
                passes(check, &who(roles, project)),
                expected,
                "`{check}` with roles {roles:?}, project {project:?}"
            );
        }
    }

    #[test]
    fn generic_claim_checks() {
        let principal = who(&[], None)
            .with_claim("sub", json!("alice"))
            .with_claim("groups", json!(["dev", "ops"]))
            .with_claim("is_admin", json!(true))
            .with_claim("level", json!(3))
            .with_claim("nested", json!({"a": "b"}));
        let cases = [
            ("sub:alice", true),
            ("sub:bob", false),
            ("groups:ops", true),
            ("groups:qa", false),
            ("is_admin:True", true),
            ("is_admin:false", false),
            ("level:3", true),
            ("nested:b", false),
            ("absent:x", false),
            ("domain_id:default", false),
        ];
        for (check, expected) in cases {
            assert_eq!(passes(check, &principal), expected, "`{check}`");
        }
    }

    #[test]
    fn implied_roles() {
        let cases: &[(&str, &str, bool)] = &[
            ("admin", "role:admin", true),
            ("admin", "role:member", true),
            ("admin", "role:reader", true),
            ("member", "role:reader", true),
            ("member", "role:admin", false),
            ("reader", "role:member", false),
            ("reader", "role:admin", false),
            ("operator", "role:reader", false),
            ("configurator", "role:reader", false),
            ("Admin", "role:reader", true),
        ];
        for &(role, check, expected) in cases {
            assert_eq!(
                passes(check, &who(&[role], None)),
                expected,
                "{role} vs `{check}`"
            );
        }
    }

    #[test]
    fn rule_references() {
        let policy = Policy::parse_rules([
            ("top", "rule:middle or role:y"),
            ("middle", "rule:bottom and not rule:excluded"),
            ("bottom", "role:x"),
            ("excluded", "project_name:other"),
            ("dangling", "rule:missing or role:y"),
            ("only_dangling", "rule:missing"),
            ("negated_dangling", "not rule:missing"),
        ])
        .expect("valid");
        let cases: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("top", &["x"], None, true),
            ("top", &["x"], Some("other"), false),
            ("top", &["y"], Some("other"), true),
            ("top", &[], None, false),
            ("dangling", &["x"], None, false),
            ("dangling", &["y"], None, true),
            ("only_dangling", &["admin"], None, false),
            ("negated_dangling", &[], None, true),
            ("no_such_rule", &["admin"], Some("admin"), false),
        ];
        for &(rule, roles, project, expected) in cases {
            assert_eq!(
                policy.enforce(rule, &who(roles, project)).is_ok(),
                expected,
                "{rule} with {roles:?} in {project:?}"
            );
        }
        assert_eq!(
            policy.enforce("no_such_rule", &who(&["admin"], Some("admin"))),
            Err(Denied {
                rule: "no_such_rule".to_owned()
            })
        );
    }

    #[test]
    fn cycles_are_rejected_at_load() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("a", "rule:a")], "a -> a"),
            (vec![("a", "rule:b"), ("b", "rule:a")], "a -> b -> a"),
            (
                vec![
                    ("entry", "rule:a"),
                    ("a", "role:x or rule:b"),
                    ("b", "not (rule:c)"),
                    ("c", "@ and rule:a"),
                ],
                "a -> b -> c -> a",
            ),
        ];
        for (rules, cycle) in cases {
            let error = Policy::parse_rules(rules.clone()).expect_err("cycle");
            assert_eq!(
                error.to_string(),
                format!("policy rules: rules refer to each other in a cycle: {cycle}"),
                "{rules:?}"
            );
        }
        assert!(Policy::parse_rules([("a", "rule:b and rule:b"), ("b", "@")]).is_ok());
    }

    #[test]
    fn override_files_merge_over_the_defaults() {
        let admin = who(&["admin"], Some("admin"));
        let operator = who(&["operator"], Some("admin"));
        let bot = who(&["backup_bot"], Some("other"));

        let yaml = Policy::with_overrides_file(testdata("policy_override.yaml")).expect("yaml");
        assert!(yaml.enforce(SUBCLOUD_BACKUP_DELETE, &admin).is_ok());
        assert!(yaml.enforce(SUBCLOUD_BACKUP_DELETE, &operator).is_err());
        assert!(yaml.enforce(SUBCLOUD_BACKUP_CREATE, &operator).is_ok());
        assert!(yaml.enforce("admin_only", &admin).is_ok());

        let json = Policy::with_overrides_file(testdata("policy_override.json")).expect("json");
        assert!(json.enforce(SUBCLOUD_BACKUP_CREATE, &bot).is_ok());
        assert!(json.enforce(SUBCLOUD_BACKUP_CREATE, &operator).is_ok());
        assert!(json.enforce(SUBCLOUD_BACKUP_DELETE, &bot).is_err());

        let empty = Policy::with_overrides_file(testdata("policy_empty.yaml")).expect("empty");
        assert_eq!(empty.rules, Policy::defaults().rules);
    }

    #[test]
    fn bad_override_files_name_the_file_rule_and_error() {
        let cases = [
            (
                "policy_bad.yaml",
                "rule `dc_api:subcloud_backup:create`: expected a check",
                "at column 15, found `or`",
            ),
            (
                "policy_cycle.yaml",
                "rules refer to each other in a cycle: ",
                "admin_or_configurator -> dc_api:subcloud_backup:restore -> admin_or_configurator",
            ),
            (
                "policy_not_string.yaml",
                "rule `dc_api:subclouds:get`: the check must be a string, not a list",
                "",
            ),
            ("policy_list.json", "expected a map of rule names", ""),
            ("does_not_exist.yaml", "No such file", ""),
        ];
        for (file, part, more) in cases {
            let path = testdata(file);
            let error = Policy::with_overrides_file(&path).expect_err(file);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("policy file {}: ", path.display())),
                "{message}"
            );
            assert!(message.contains(part), "{message}");
            assert!(message.contains(more), "{message}");
        }
    }
}
