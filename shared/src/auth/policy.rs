//! Route policy in the oslo.policy check-string language dcmanager operators already write
//! (`(role:admin or role:operator) and project_name:admin`, `rule:NAME`, `not`, `@`, `!`).
//! Check strings are parsed once, at start, into expressions; dcmanager's default rules are
//! built in and an operator's file may override or add rules. Everything that can be wrong with
//! a rule — syntax, a `rule:` cycle — fails the start with the file, the rule and the offending
//! text; a rule that does not exist at all simply denies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Principal;

/// The rule names handlers enforce, so none is ever misspelt at a call site.
pub mod rules {
    pub const ADMIN_OR_CONFIGURATOR: &str = "admin_or_configurator";
    pub const ADMIN_OR_OPERATOR_OR_CONFIGURATOR: &str = "admin_or_operator_or_configurator";
    pub const READER_OR_OPERATOR_OR_CONFIGURATOR: &str = "reader_or_operator_or_configurator";

    pub const SUBCLOUD_BACKUP_CREATE: &str = "dc_api:subcloud_backup:create";
    pub const SUBCLOUD_BACKUP_DELETE: &str = "dc_api:subcloud_backup:delete";
    pub const SUBCLOUD_BACKUP_RESTORE: &str = "dc_api:subcloud_backup:restore";
    /// Operation records and backup lists (dcbackup's own, not dcmanager's).
    pub const SUBCLOUD_BACKUP_GET: &str = "dc_api:subcloud_backup:get";

    pub const SUBCLOUDS_GET: &str = "dc_api:subclouds:get";
    pub const SUBCLOUDS_CREATE: &str = "dc_api:subclouds:create";
    pub const SUBCLOUDS_MODIFY: &str = "dc_api:subclouds:modify";
    pub const SUBCLOUDS_DELETE: &str = "dc_api:subclouds:delete";
    pub const SUBCLOUDS_MANAGE_UNMANAGE: &str = "dc_api:subclouds:manage_unmanage";

    pub const SUBCLOUD_GROUPS_GET: &str = "dc_api:subcloud_groups:get";
    pub const SUBCLOUD_GROUPS_CREATE: &str = "dc_api:subcloud_groups:create";
    pub const SUBCLOUD_GROUPS_MODIFY: &str = "dc_api:subcloud_groups:modify";
    pub const SUBCLOUD_GROUPS_DELETE: &str = "dc_api:subcloud_groups:delete";

    /// Backup schedules (dcbackup's own, in dcmanager's style: reading them is a reader's
    /// right, changing them an operator's, as starting backups is).
    pub const BACKUP_SCHEDULES_GET: &str = "dc_api:backup_schedules:get";
    pub const BACKUP_SCHEDULES_CREATE: &str = "dc_api:backup_schedules:create";
    pub const BACKUP_SCHEDULES_MODIFY: &str = "dc_api:backup_schedules:modify";
    pub const BACKUP_SCHEDULES_DELETE: &str = "dc_api:backup_schedules:delete";
}

/// dcmanager's defaults (dcmanager/api/policies), plus `subcloud_backup:get` for our reads
/// and the `backup_schedules` rules.
const DEFAULT_RULES: [(&str, &str); 20] = [
    (
        rules::ADMIN_OR_CONFIGURATOR,
        "(role:admin or role:configurator) and (project_name:admin or project_name:services)",
    ),
    (
        rules::ADMIN_OR_OPERATOR_OR_CONFIGURATOR,
        "(role:admin or role:operator or role:configurator) and \
         (project_name:admin or project_name:services)",
    ),
    (
        rules::READER_OR_OPERATOR_OR_CONFIGURATOR,
        "(role:reader or role:operator or role:configurator) and \
         (project_name:admin or project_name:services)",
    ),
    (
        rules::SUBCLOUD_BACKUP_CREATE,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        rules::SUBCLOUD_BACKUP_DELETE,
        "rule:admin_or_operator_or_configurator",
    ),
    (rules::SUBCLOUD_BACKUP_RESTORE, "rule:admin_or_configurator"),
    (
        rules::SUBCLOUD_BACKUP_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (
        rules::SUBCLOUDS_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (rules::SUBCLOUDS_CREATE, "rule:admin_or_configurator"),
    (rules::SUBCLOUDS_MODIFY, "rule:admin_or_configurator"),
    (rules::SUBCLOUDS_DELETE, "rule:admin_or_configurator"),
    (
        rules::SUBCLOUDS_MANAGE_UNMANAGE,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        rules::SUBCLOUD_GROUPS_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (rules::SUBCLOUD_GROUPS_CREATE, "rule:admin_or_configurator"),
    (rules::SUBCLOUD_GROUPS_MODIFY, "rule:admin_or_configurator"),
    (rules::SUBCLOUD_GROUPS_DELETE, "rule:admin_or_configurator"),
    (
        rules::BACKUP_SCHEDULES_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (
        rules::BACKUP_SCHEDULES_CREATE,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        rules::BACKUP_SCHEDULES_MODIFY,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        rules::BACKUP_SCHEDULES_DELETE,
        "rule:admin_or_operator_or_configurator",
    ),
];

/// A deeper check string is a mistake, and unbounded nesting would exhaust the stack.
const MAX_NESTING: usize = 32;

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

/// A check string that is not one, pointing at the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} at column {column}, found {}", .found.as_deref().map_or_else(|| "the end of the rule".to_owned(), |f| format!("`{f}`")))]
pub struct ParseError {
    /// 1-based, in characters.
    pub column: usize,
    /// The offending token; `None` at the end of the check string.
    pub found: Option<String>,
    pub expected: &'static str,
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Always,
    Never,
    /// Lower-cased.
    Role(String),
    Project(String),
    Claim {
        name: String,
        value: String,
    },
    Rule(String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn references(&self) -> Vec<&str> {
        let mut found = Vec::new();
        let mut pending = vec![self];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::Rule(name) => found.push(name.as_str()),
                Expr::Not(inner) => pending.push(inner),
                Expr::And(terms) | Expr::Or(terms) => pending.extend(terms),
                _ => {}
            }
        }
        found
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

const EXPECTED_CHECK: &str =
    "a check (`role:R`, `project_name:P`, `rule:NAME`, `<claim>:<value>`, `@`, `!`), `not` or `(`";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Close,
    And,
    Or,
    Not,
    Word,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Byte offset in the check string.
    at: usize,
}

/// Words are split on whitespace and parentheses, as oslo.policy splits them; `and`, `or` and
/// `not` are keywords in any case.
fn tokenize(src: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '(' || c == ')' {
            chars.next();
            let kind = if c == '(' { Kind::Open } else { Kind::Close };
            tokens.push(Token {
                kind,
                text: &src[at..at + 1],
                at,
            });
            continue;
        }
        let mut end = src.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || c == '(' || c == ')' {
                end = i;
                break;
            }
            chars.next();
        }
        let text = &src[at..end];
        let kind = match text.to_ascii_lowercase().as_str() {
            "and" => Kind::And,
            "or" => Kind::Or,
            "not" => Kind::Not,
            _ => Kind::Word,
        };
        tokens.push(Token { kind, text, at });
    }
    tokens
}

/// Parses a check string. Precedence, loosest first: `or`, `and`, `not`; parentheses group.
/// An empty check string always passes, as in oslo.policy.
fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        src,
        tokens: tokenize(src),
        next: 0,
        depth: 0,
    };
    if parser.tokens.is_empty() {
        return Ok(Expr::Always);
    }
    let expr = parser.or()?;
    match parser.bump() {
        None => Ok(expr),
        stray => Err(parser.error(stray, "`and`, `or` or the end of the rule")),
    }
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek_is(&self, kind: Kind) -> bool {
        self.tokens.get(self.next).is_some_and(|t| t.kind == kind)
    }

    fn bump(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.next).copied();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn error(&self, found: Option<Token<'a>>, expected: &'static str) -> ParseError {
        match found {
            Some(token) => ParseError {
                column: self.src[..token.at].chars().count() + 1,
                found: Some(token.text.to_owned()),
                expected,
            },
            None => ParseError {
                column: self.src.chars().count() + 1,
                found: None,
                expected,
            },
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and()?];
        while self.peek_is(Kind::Or) {
            self.bump();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.not()?];
        while self.peek_is(Kind::And) {
            self.bump();
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if !self.peek_is(Kind::Not) {
            return self.primary();
        }
        let not = self.bump();
        self.nested(not, |p| p.not())
            .map(|inner| Expr::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.bump();
        match token {
            Some(Token {
                kind: Kind::Open, ..
            }) => {
                let inner = self.nested(token, |p| p.or())?;
                match self.bump() {
                    Some(Token {
                        kind: Kind::Close, ..
                    }) => Ok(inner),
                    other => Err(self.error(other, "`and`, `or` or `)`")),
                }
            }
            Some(Token {
                kind: Kind::Word,
                text,
                ..
            }) => check(text).ok_or_else(|| self.error(token, EXPECTED_CHECK)),
            _ => Err(self.error(token, EXPECTED_CHECK)),
        }
    }

    fn nested(
        &mut self,
        opener: Option<Token<'a>>,
        inner: impl FnOnce(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        if self.depth == MAX_NESTING {
            return Err(self.error(opener, "at most 32 nested `(` or `not`"));
        }
        self.depth += 1;
        let expr = inner(self);
        self.depth -= 1;
        expr
    }
}

/// One check: `@`, `!`, or `<kind>:<match>` where kind `role`, `rule` and `project_name` are
/// known and any other kind names a claim of the token.
fn check(word: &str) -> Option<Expr> {
    match word {
        "@" => return Some(Expr::Always),
        "!" => return Some(Expr::Never),
        _ => {}
    }
    let (kind, value) = word.split_once(':')?;
    if kind.is_empty() || value.is_empty() {
        return None;
    }
    Some(match kind {
        "role" => Expr::Role(value.to_lowercase()),
        "rule" => Expr::Rule(value.to_owned()),
        "project_name" => Expr::Project(value.to_owned()),
        _ => Expr::Claim {
            name: kind.to_owned(),
            value: value.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::rules::*;
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/auth/testdata")
            .join(name)
    }

    fn who(roles: &[&str], project: Option<&str>) -> Principal {
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
    fn parse_errors_point_at_the_offending_text() {
        let deep = format!("{}role:a{}", "(".repeat(40), ")".repeat(40));
        let cases: Vec<(&str, usize, Option<&str>)> = vec![
            ("role:admin and", 15, None),
            ("role:admin or or role:x", 15, Some("or")),
            ("(role:admin", 12, None),
            ("role:admin)", 11, Some(")")),
            ("admin", 1, Some("admin")),
            ("role:a and admin", 12, Some("admin")),
            ("role: or role:a", 1, Some("role:")),
            (":admin", 1, Some(":admin")),
            ("role:a and (not)", 16, Some(")")),
            ("role:a role:b", 8, Some("role:b")),
            ("(role:a role:b)", 9, Some("role:b")),
            ("()", 2, Some(")")),
            ("and role:a", 1, Some("and")),
            ("rôle:a ou role:b", 8, Some("ou")),
            (&deep, 33, Some("(")),
        ];
        for (check, column, found) in cases {
            let error = parse(check).expect_err(check);
            assert_eq!(
                (error.column, error.found.as_deref()),
                (column, found),
                "`{check}`: {error}"
            );
        }
        let error = parse("role:admin or or role:x").expect_err("bad");
        assert_eq!(
            error.to_string(),
            format!("expected {EXPECTED_CHECK} at column 15, found `or`")
        );
        let error = parse("(role:admin").expect_err("bad");
        assert_eq!(
            error.to_string(),
            "expected `and`, `or` or `)` at column 12, found the end of the rule"
        );
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
    fn default_rules_for_every_principal() {
        const AC: &[&str] = &["admin", "configurator"];
        const AOC: &[&str] = &["admin", "operator", "configurator"];
        const ROC: &[&str] = &["admin", "member", "reader", "operator", "configurator"];
        let table: [(&str, &[&str]); 20] = [
            (ADMIN_OR_CONFIGURATOR, AC),
            (ADMIN_OR_OPERATOR_OR_CONFIGURATOR, AOC),
            (READER_OR_OPERATOR_OR_CONFIGURATOR, ROC),
            (SUBCLOUD_BACKUP_CREATE, AOC),
            (SUBCLOUD_BACKUP_DELETE, AOC),
            (SUBCLOUD_BACKUP_RESTORE, AC),
            (SUBCLOUD_BACKUP_GET, ROC),
            (SUBCLOUDS_GET, ROC),
            (SUBCLOUDS_CREATE, AC),
            (SUBCLOUDS_MODIFY, AC),
            (SUBCLOUDS_DELETE, AC),
            (SUBCLOUDS_MANAGE_UNMANAGE, AOC),
            (SUBCLOUD_GROUPS_GET, ROC),
            (SUBCLOUD_GROUPS_CREATE, AC),
            (SUBCLOUD_GROUPS_MODIFY, AC),
            (SUBCLOUD_GROUPS_DELETE, AC),
            (BACKUP_SCHEDULES_GET, ROC),
            (BACKUP_SCHEDULES_CREATE, AOC),
            (BACKUP_SCHEDULES_MODIFY, AOC),
            (BACKUP_SCHEDULES_DELETE, AOC),
        ];
        let policy = Policy::defaults();
        assert_eq!(policy.rules.len(), table.len(), "every default is tested");
        let roles = [
            "admin",
            "member",
            "operator",
            "configurator",
            "reader",
            "observer",
        ];
        for (rule, allowed) in table {
            for role in roles {
                for project in ["admin", "services", "other"] {
                    let expected = allowed.contains(&role) && project != "other";
                    assert_eq!(
                        policy.enforce(rule, &who(&[role], Some(project))).is_ok(),
                        expected,
                        "{rule}: {role} in {project}"
                    );
                }
                assert!(
                    policy.enforce(rule, &who(&[role], None)).is_err(),
                    "{rule}: {role} without a project"
                );
            }
        }
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
