//! Alertmanager's label matchers (`name=value`, `name!=value`, `name=~regex`, `name!~regex`),
//! parsed and checked before a silence reaches Alertmanager, so that a mistake comes back naming
//! the matcher at fault rather than as Alertmanager's 400.
//!
//! The syntax and meaning follow Alertmanager's own parser: a value may be double-quoted, inside
//! it `\"`, `\\` and `\n` are escapes and any other backslash is literal (so `=~"5\d\d"` means
//! what it says); a regex must match the whole label value (Alertmanager anchors it as
//! `^(?:…)$`); a missing label counts as the empty value. Regexes are compiled with the `regex`
//! crate, whose syntax is RE2's, as Go's is, for all but rare corners.

use std::fmt;

use regex::Regex;

use super::client::ApiMatcher;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }

    fn is_positive(self) -> bool {
        matches!(self, MatchOp::Equal | MatchOp::Regex)
    }
}

/// One checked matcher. `regex` is the anchored, compiled form of a regex matcher's value.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        if !is_label_name(name) {
            return Err(format!(
                "label name {name:?} is invalid: use letters, digits and _, not starting with a digit"
            ));
        }
        let regex = if op.is_regex() {
            let anchored = format!("^(?:{value})$");
            Some(
                Regex::new(&anchored)
                    .map_err(|error| format!("regex {value:?} does not compile: {}", regex_error(&error)))?,
            )
        } else {
            None
        };
        Ok(Matcher { name: name.to_string(), op, value: value.to_string(), regex })
    }

    /// Parses one matcher in Alertmanager's syntax; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        if text.starts_with('{') {
            return Err("give one matcher per element, without braces: [\"alertname=\\\"X\\\"\", \"severity=\\\"critical\\\"\"]".to_string());
        }
        let Some(at) = text.find(['=', '!']) else {
            return Err("no operator: write name=value, name!=value, name=~regex or name!~regex".to_string());
        };
        let name = text[..at].trim();
        let rest = &text[at..];
        let (op, raw) = if let Some(raw) = rest.strip_prefix("=~") {
            (MatchOp::Regex, raw)
        } else if let Some(raw) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, raw)
        } else if let Some(raw) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, raw)
        } else if let Some(raw) = rest.strip_prefix('=') {
            (MatchOp::Equal, raw)
        } else {
            return Err("unknown operator: use =, !=, =~ or !~".to_string());
        };
        if name.is_empty() {
            return Err("no label name before the operator".to_string());
        }
        let value = parse_value(raw.trim())?;
        Matcher::new(name, op, &value)
    }

    /// Whether a label value satisfies the matcher; a missing label is the empty value.
    pub fn matches(&self, value: &str) -> bool {
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            // `new` compiles every regex matcher.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// A positive matcher that accepts the empty value, and so every alert without its label:
    /// it narrows nothing down. Alertmanager refuses a silence made only of these (its rule
    /// counts negative matchers as narrowing, and so does this one).
    pub fn narrows_nothing(&self) -> bool {
        self.op.is_positive() && self.matches("")
    }

    pub fn to_api(&self) -> ApiMatcher {
        ApiMatcher {
            name: self.name.clone(),
            value: self.value.clone(),
            is_regex: self.op.is_regex(),
            is_equal: self.op.is_positive(),
        }
    }
}

/// `name="value"`, with the value quoted and escaped as Alertmanager's parsers read it back (the
/// form `filter` parameters are sent in).
impl fmt::Display for Matcher {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}{}\"{}\"", self.name, self.op.as_str(), escape(&self.value))
    }
}

/// A matcher as a silence from the API holds it, in the same form as `Matcher`'s `Display`.
pub fn api_matcher_text(matcher: &ApiMatcher) -> String {
    let op = match (matcher.is_equal, matcher.is_regex) {
        (true, false) => MatchOp::Equal,
        (false, false) => MatchOp::NotEqual,
        (true, true) => MatchOp::Regex,
        (false, true) => MatchOp::NotRegex,
    };
    format!("{}{}\"{}\"", matcher.name, op.as_str(), escape(&matcher.value))
}

/// Parses and checks a silence's matchers: at least one, each valid, and not all of them
/// narrowing nothing. Errors name the matcher (`matchers[1] "severity=~\"(\"": …`).
pub fn parse_silence_matchers(texts: &[String]) -> Result<Vec<Matcher>, String> {
    if texts.is_empty() {
        return Err("matchers: give at least one, e.g. [\"alertname=\\\"HighErrorRate\\\"\"]".to_string());
    }
    let matchers = texts
        .iter()
        .enumerate()
        .map(|(index, text)| Matcher::parse(text).map_err(|reason| format!("matchers[{index}] {text:?}: {reason}")))
        .collect::<Result<Vec<Matcher>, String>>()?;
    if matchers.iter().all(Matcher::narrows_nothing) {
        let shown: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
        return Err(format!(
            "matchers {} match every alert: each also accepts an empty or missing label, so the silence \
             would cover everything (Alertmanager refuses such silences); add one that needs a value, \
             e.g. alertname=\"HighErrorRate\"",
            shown.join(", ")
        ));
    }
    Ok(matchers)
}

/// Prometheus' label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|rest| rest.is_ascii_alphanumeric() || rest == '_')
}

/// A matcher's value, quoted or not, unescaped as Alertmanager does.
fn parse_value(raw: &str) -> Result<String, String> {
    let (inner, quoted) = match raw.strip_prefix('"') {
        Some(inner) => match inner.strip_suffix('"').filter(|body| !ends_in_escape(body)) {
            Some(body) => (body, true),
            None => return Err("the value's opening double quote is not closed".to_string()),
        },
        None => (raw, false),
    };
    if !quoted {
        // A value in single quotes or backticks would be taken literally, quotes included, and
        // then match nothing: almost certainly not what was meant.
        let wrapped = |quote: char| raw.len() >= 2 && raw.starts_with(quote) && raw.ends_with(quote);
        if wrapped('\'') || wrapped('`') {
            return Err("quote values with double quotes".to_string());
        }
        if raw.contains(',') {
            return Err(
                "unquoted value with a comma: give each matcher as its own element, or quote the value".to_string()
            );
        }
    }
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('n') => {
                    value.push('\n');
                    chars.next();
                }
                Some(&escaped @ ('"' | '\\')) => {
                    value.push(escaped);
                    chars.next();
                }
                // Not an escape: the backslash is literal (a regex's `\d`).
                _ => value.push('\\'),
            },
            '"' => return Err("unescaped double quote in the value; write \\\" for a literal one".to_string()),
            other => value.push(other),
        }
    }
    Ok(value)
}

/// Whether `text` ends in an odd number of backslashes, which escape the quote after them.
fn ends_in_escape(text: &str) -> bool {
    text.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// The escapes Alertmanager's parsers undo: `\\`, `\"` and `\n`.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The one line of a regex syntax error that says what is wrong (the rest is a caret diagram).
fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}
