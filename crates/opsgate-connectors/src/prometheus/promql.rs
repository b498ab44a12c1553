//! Just enough PromQL text handling for the tools: quoting label values, printing series
//! compactly, finding the metrics a query selects and splitting an alert rule's expression into
//! the measured side and its threshold (`… > 0.05`).
//!
//! This is not a parser. It walks the text outside string literals and comments, tracking bracket
//! depth, which is all these jobs need; anything it cannot read with confidence it declines
//! (`None`), and the caller shows the expression as it is.

// Splitting rules at their threshold and matching series to alerts serve the Alertmanager tools.
#![cfg_attr(not(feature = "alertmanager"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};

/// A series' labels, `__name__` included, as the Prometheus API returns them.
pub type Labels = BTreeMap<String, String>;

/// A label value as a PromQL double-quoted string literal.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        match character {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// A label matcher `name="value"`.
pub fn matcher(label: &str, value: &str) -> String {
    format!("{label}={}", quote(value))
}

/// A series as PromQL would select it: `name{a="b",c="d"}`, leaving out the labels in `omit`.
/// `{}` alone is written for a series with no labels left, so a row is never blank.
pub fn format_series(labels: &Labels, omit: &Labels) -> String {
    let name = labels.get("__name__").filter(|_| !omit.contains_key("__name__"));
    let matchers: Vec<String> = labels
        .iter()
        .filter(|(label, value)| label.as_str() != "__name__" && omit.get(label.as_str()) != Some(value))
        .map(|(label, value)| matcher(label, value))
        .collect();
    match name {
        Some(name) if matchers.is_empty() => name.clone(),
        Some(name) => format!("{name}{{{}}}", matchers.join(",")),
        None => format!("{{{}}}", matchers.join(",")),
    }
}

/// The labels every series shares, with the same value, when there are two series or more:
/// printed once above a table instead of in every row. One series keeps all its labels.
pub fn common_labels<'a>(series: impl IntoIterator<Item = &'a Labels>) -> Labels {
    let mut iter = series.into_iter();
    let Some(first) = iter.next() else {
        return Labels::new();
    };
    let mut common = first.clone();
    let mut n_series = 1;
    for labels in iter {
        n_series += 1;
        common.retain(|label, value| labels.get(label) == Some(value));
    }
    if n_series < 2 { Labels::new() } else { common }
}

/// Characters of a PromQL expression outside string literals and comments, with their byte
/// offset and bracket depth (`(`, `[` and `{` all count).
fn code_chars(expr: &str) -> Vec<(usize, char, usize)> {
    let mut out = Vec::with_capacity(expr.len());
    let mut depth: usize = 0;
    let mut chars = expr.char_indices().peekable();
    while let Some((index, character)) = chars.next() {
        match character {
            '"' | '\'' | '`' => {
                // Skip the literal; raw strings (backticks) have no escapes.
                let raw = character == '`';
                while let Some((_, inner)) = chars.next() {
                    if inner == character {
                        break;
                    }
                    if inner == '\\' && !raw {
                        chars.next();
                    }
                }
            }
            '#' => {
                for (_, inner) in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                out.push((index, character, depth));
                depth += 1;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                out.push((index, character, depth));
            }
            other => out.push((index, other, depth)),
        }
    }
    out
}

fn is_identifier_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_' || character == ':'
}

fn is_identifier_char(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == ':'
}

/// Metric names selected as `name{…}` in `expr`, without duplicates, in order of appearance.
/// Bare `name` selectors are not found; the templates this serves always carry a `{…}`.
pub fn selected_metrics(expr: &str) -> Vec<String> {
    let chars = code_chars(expr);
    let mut found: Vec<String> = Vec::new();
    // Inside braces, words are label names (followed by `=`), never metric names.
    let mut brace_depth: usize = 0;
    let mut index = 0;
    while index < chars.len() {
        let (start, character, _) = chars[index];
        match character {
            '{' => brace_depth += 1,
            '}' => brace_depth = brace_depth.saturating_sub(1),
            _ => {}
        }
        let follows_word = index > 0 && is_identifier_char(chars[index - 1].1) && chars[index - 1].0 + 1 == start;
        if brace_depth > 0 || !is_identifier_start(character) || follows_word {
            index += 1;
            continue;
        }
        // Identifier characters are ASCII, one byte each, so contiguous ones have consecutive offsets.
        let mut end = index + 1;
        while end < chars.len() && is_identifier_char(chars[end].1) && chars[end].0 == chars[end - 1].0 + 1 {
            end += 1;
        }
        let name = &expr[start..chars[end - 1].0 + 1];
        let next = chars[end..].iter().find(|(_, character, _)| !character.is_whitespace());
        if next.is_some_and(|(_, character, _)| *character == '{') && !found.iter().any(|known| known == name) {
            found.push(name.to_string());
        }
        index = end;
    }
    found
}

/// A comparison operator of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }

    /// The same comparison with its sides swapped: `0.05 < x` is `x > 0.05`.
    fn flipped(self) -> Comparison {
        match self {
            Comparison::Greater => Comparison::Less,
            Comparison::GreaterOrEqual => Comparison::LessOrEqual,
            Comparison::Less => Comparison::Greater,
            Comparison::LessOrEqual => Comparison::GreaterOrEqual,
            other => other,
        }
    }

    /// Whether `value` satisfies `value <op> threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => value != threshold,
        }
    }
}

/// An alert rule's expression split at its final comparison with a number.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The measured side, runnable on its own.
    pub measured: String,
    pub comparison: Comparison,
    pub value: f64,
}

/// Splits `measured <op> number` (or `number <op> measured`) at the last top-level comparison.
/// Declines (`None`) when the expression combines conditions with `and`, `or` or `unless`, when
/// the comparison is a `bool` one (it does not filter), or when neither side is a plain number.
pub fn split_threshold(expr: &str) -> Option<Threshold> {
    let without_comments = strip_comments(expr);
    let expr = strip_outer_parens(without_comments.trim());
    let chars = code_chars(expr);

    // Set operators at the top level make "the" threshold ambiguous.
    let top_level_words = top_level_words(&chars);
    if top_level_words.iter().any(|word| matches!(word.as_str(), "and" | "or" | "unless")) {
        return None;
    }

    let mut last: Option<(usize, usize, Comparison)> = None;
    let mut index = 0;
    while index < chars.len() {
        let (offset, character, depth) = chars[index];
        let next = chars.get(index + 1).filter(|(next_offset, _, _)| *next_offset == offset + 1).map(|(_, c, _)| *c);
        if depth == 0 {
            let found = match (character, next) {
                ('>', Some('=')) => Some((2, Comparison::GreaterOrEqual)),
                ('<', Some('=')) => Some((2, Comparison::LessOrEqual)),
                ('=', Some('=')) => Some((2, Comparison::Equal)),
                ('!', Some('=')) => Some((2, Comparison::NotEqual)),
                ('>', _) => Some((1, Comparison::Greater)),
                ('<', _) => Some((1, Comparison::Less)),
                _ => None,
            };
            if let Some((length, comparison)) = found {
                last = Some((offset, length, comparison));
                index += length;
                continue;
            }
        }
        index += 1;
    }
    let (offset, length, comparison) = last?;
    let left = expr[..offset].trim();
    let right = expr[offset + length..].trim();
    if right.starts_with("bool") && right[4..].starts_with(|c: char| c.is_whitespace() || c == '(') {
        return None;
    }
    if let Some(value) = parse_number(right) {
        return (!left.is_empty()).then(|| Threshold { measured: left.to_string(), comparison, value });
    }
    // `0.05 < x`: the number on the left. Only when nothing else precedes the comparison.
    let value = parse_number(left)?;
    (!right.is_empty()).then(|| Threshold { measured: right.to_string(), comparison: comparison.flipped(), value })
}

/// `expr` without its `#` comments (outside string literals), which rule files may carry.
fn strip_comments(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut chars = expr.chars();
    while let Some(character) = chars.next() {
        match quote {
            Some(open) => {
                out.push(character);
                if character == '\\' && open != '`' {
                    out.extend(chars.next());
                } else if character == open {
                    quote = None;
                }
            }
            None if character == '#' => {
                // Drop to the end of the line, keep the line break.
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            None => {
                if matches!(character, '"' | '\'' | '`') {
                    quote = Some(character);
                }
                out.push(character);
            }
        }
    }
    out
}

/// Words (identifiers) at bracket depth 0.
fn top_level_words(chars: &[(usize, char, usize)]) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_offset = None;
    for &(offset, character, depth) in chars {
        let contiguous = previous_offset.is_some_and(|previous: usize| offset == previous + 1);
        if depth == 0 && is_identifier_char(character) && (current.is_empty() || contiguous) {
            current.push(character);
        } else {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            if depth == 0 && is_identifier_start(character) {
                current.push(character);
            }
        }
        previous_offset = Some(offset);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Removes parentheses that enclose the whole expression: `(x > 1)` → `x > 1`.
fn strip_outer_parens(mut expr: &str) -> &str {
    loop {
        let trimmed = expr.trim();
        if !(trimmed.starts_with('(') && trimmed.ends_with(')')) {
            return trimmed;
        }
        // The opening parenthesis must close at the very end, not earlier as in `(a) + (b)`.
        let chars = code_chars(trimmed);
        let closes_at_end = chars
            .iter()
            .skip(1)
            .find(|(_, character, depth)| *character == ')' && *depth == 0)
            .is_some_and(|(offset, _, _)| *offset == trimmed.len() - 1);
        if !closes_at_end {
            return trimmed;
        }
        expr = &trimmed[1..trimmed.len() - 1];
    }
}

/// A PromQL number literal: decimal, exponent, hexadecimal, `Inf`, `NaN`, optionally signed and
/// parenthesised.
pub fn parse_number(text: &str) -> Option<f64> {
    let text = strip_outer_parens(text.trim());
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest.trim_start()),
        None => (1.0, text.strip_prefix('+').map(str::trim_start).unwrap_or(text)),
    };
    if digits.is_empty() {
        return None;
    }
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|value| sign * value as f64);
    }
    // Rust also accepts `infinity` and `nan` in any case, as PromQL does with `Inf` and `NaN`;
    // refuse anything else alphabetic (a metric name such as `e` or `inf_total`).
    let lower = digits.to_ascii_lowercase();
    let is_special = matches!(lower.as_str(), "inf" | "nan" | "infinity");
    if !is_special && !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    digits.parse::<f64>().ok().map(|value| sign * value)
}

/// The labels of `series` are all present, with the same values, in `labels` (ignoring
/// `__name__`): the series is the one an alert with `labels` came from.
pub fn labels_within(series: &Labels, labels: &Labels) -> bool {
    series
        .iter()
        .filter(|(label, _)| label.as_str() != "__name__")
        .all(|(label, value)| labels.get(label) == Some(value))
}

/// No label of `series` has a different value in `labels` (labels missing from either side are
/// fine).
pub fn labels_compatible(series: &Labels, labels: &Labels) -> bool {
    series
        .iter()
        .filter(|(label, _)| label.as_str() != "__name__")
        .all(|(label, value)| labels.get(label).is_none_or(|other| other == value))
}

/// Labels an alert adds on top of the series it came from, which are not worth repeating in
/// every row.
pub fn without_labels(labels: &Labels, drop: &BTreeSet<&str>) -> Labels {
    labels.iter().filter(|(label, _)| !drop.contains(label.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}
