//! The subset of Okta's `search` / `filter` expression language the
//! simulator understands: `attr eq|sw|co "value"`, `and`, `or` (and binds
//! tighter), parentheses; string values with backslash escapes.
//!
//! Invariant: pure; an expression it does not understand is an error (the
//! simulator answers 400 E0000031), never a silent "match everything".

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare { attr: String, op: Op, value: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    StartsWith,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err("dangling backslash".into()),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                if !closed {
                    return Err("unterminated string".into());
                }
                tokens.push(Token::Str(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Parses an expression.
pub(crate) fn parse(input: &str) -> Result<Expr, String> {
    let tokens = tokenize(input)?;
    let mut pos = 0;
    let expr = parse_or(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("unexpected {:?}", tokens[pos]));
    }
    Ok(expr)
}

fn is_keyword(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
}

fn parse_or(tokens: &[Token], pos: &mut usize) -> Result<Expr, String> {
    let mut left = parse_and(tokens, pos)?;
    while is_keyword(tokens.get(*pos), "or") {
        *pos += 1;
        let right = parse_and(tokens, pos)?;
        left = Expr::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_and(tokens: &[Token], pos: &mut usize) -> Result<Expr, String> {
    let mut left = parse_term(tokens, pos)?;
    while is_keyword(tokens.get(*pos), "and") {
        *pos += 1;
        let right = parse_term(tokens, pos)?;
        left = Expr::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_term(tokens: &[Token], pos: &mut usize) -> Result<Expr, String> {
    match tokens.get(*pos) {
        Some(Token::Open) => {
            *pos += 1;
            let inner = parse_or(tokens, pos)?;
            if tokens.get(*pos) != Some(&Token::Close) {
                return Err("missing ')'".into());
            }
            *pos += 1;
            Ok(inner)
        }
        Some(Token::Word(attr)) => {
            let op = match tokens.get(*pos + 1) {
                Some(Token::Word(op)) if op.eq_ignore_ascii_case("eq") => Op::Eq,
                Some(Token::Word(op)) if op.eq_ignore_ascii_case("sw") => Op::StartsWith,
                Some(Token::Word(op)) if op.eq_ignore_ascii_case("co") => Op::Contains,
                other => return Err(format!("unsupported operator {other:?}")),
            };
            let value = match tokens.get(*pos + 2) {
                Some(Token::Str(value)) => value.clone(),
                other => return Err(format!("expected a quoted value, got {other:?}")),
            };
            *pos += 3;
            Ok(Expr::Compare {
                attr: attr.clone(),
                op,
                value,
            })
        }
        other => Err(format!("unexpected {other:?}")),
    }
}

impl Expr {
    /// Evaluates against an object whose attributes `get` looks up.
    /// `ignore_case`: `search` compares values case-insensitively, `filter`
    /// does not.
    pub(crate) fn matches(&self, get: &dyn Fn(&str) -> Option<String>, ignore_case: bool) -> bool {
        match self {
            Expr::And(a, b) => a.matches(get, ignore_case) && b.matches(get, ignore_case),
            Expr::Or(a, b) => a.matches(get, ignore_case) || b.matches(get, ignore_case),
            Expr::Compare { attr, op, value } => {
                let Some(actual) = get(attr) else {
                    return false;
                };
                let (actual, value) = if ignore_case {
                    (actual.to_lowercase(), value.to_lowercase())
                } else {
                    (actual, value.clone())
                };
                match op {
                    Op::Eq => actual == value,
                    Op::StartsWith => actual.starts_with(&value),
                    Op::Contains => actual.contains(&value),
                }
            }
        }
    }

    /// Evaluates against an object whose attributes may have several values
    /// (`target.id` of a System Log event): a comparison holds when one of
    /// them does. Case-sensitive, like the System Log's `filter`.
    pub(crate) fn matches_any(&self, get: &dyn Fn(&str) -> Vec<String>) -> bool {
        match self {
            Expr::And(a, b) => a.matches_any(get) && b.matches_any(get),
            Expr::Or(a, b) => a.matches_any(get) || b.matches_any(get),
            Expr::Compare { attr, op, value } => get(attr).iter().any(|actual| match op {
                Op::Eq => actual == value,
                Op::StartsWith => actual.starts_with(value.as_str()),
                Op::Contains => actual.contains(value.as_str()),
            }),
        }
    }

    /// Whether only `eq` is used (what Okta's `filter` allows).
    pub(crate) fn only_eq(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.only_eq() && b.only_eq(),
            Expr::Compare { op, .. } => *op == Op::Eq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(attrs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let attrs: Vec<(String, String)> = attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn parses_escapes_and_precedence() {
        let expr = parse(r#"profile.name eq "say \"hi\" \\ now""#).unwrap();
        assert_eq!(
            expr,
            Expr::Compare {
                attr: "profile.name".into(),
                op: Op::Eq,
                value: r#"say "hi" \ now"#.into()
            }
        );
        let get = lookup(&[("type", "OKTA_GROUP"), ("profile.name", "Eng")]);
        let expr = parse(r#"type eq "APP_GROUP" or type eq "OKTA_GROUP" and profile.name sw "E""#)
            .unwrap();
        assert!(expr.matches(&get, false));
        let expr =
            parse(r#"(type eq "APP_GROUP" or type eq "OKTA_GROUP") and profile.name co "x""#)
                .unwrap();
        assert!(!expr.matches(&get, false));
    }

    #[test]
    fn search_ignores_case_filter_does_not() {
        let get = lookup(&[("profile.name", "Engineering")]);
        let expr = parse(r#"profile.name eq "ENGINEERING""#).unwrap();
        assert!(expr.matches(&get, true));
        assert!(!expr.matches(&get, false));
        assert!(expr.only_eq());
        assert!(!parse(r#"profile.name sw "E""#).unwrap().only_eq());
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for bad in [
            "",
            "profile.name",
            r#"profile.name ne "x""#,
            r#"profile.name eq x"#,
            r#"profile.name eq "x"#,
            r#"(profile.name eq "x""#,
            r#"profile.name eq "x" extra"#,
            r#"profile.name pr"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
