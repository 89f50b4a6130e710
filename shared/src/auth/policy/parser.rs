//! The oslo.policy check-string language: `(role:admin or role:operator) and
//! project_name:admin`, `rule:NAME`, `not`, `@`, `!`, split into words as oslo.policy splits
//! them and parsed into an [`Expr`] once, at start; a check string that is not one is a
//! [`ParseError`] pointing at the offending text.

/// A deeper check string is a mistake, and unbounded nesting would exhaust the stack.
const MAX_NESTING: usize = 32;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expr {
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
    pub(super) fn references(&self) -> Vec<&str> {
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
pub(super) fn parse(src: &str) -> Result<Expr, ParseError> {
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
    use super::*;

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
}
