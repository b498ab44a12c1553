//! Canonical JSON: object keys sorted at every depth, no insignificant white space. Hashes of
//! arguments and audit records are taken over this form so that key order never changes them.

use std::fmt::Write;

use serde_json::{Map, Value};

pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// `canonical_json` of an object, without wrapping it in a `Value` first.
pub fn canonical_object(map: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_object(map, &mut out);
    out
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|left, right| left.0.cmp(right.0));
    out.push('{');
    for (index, (key, item)) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        write_canonical(item, out);
    }
    out.push('}');
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_string(text, out),
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => {
            let _ = write!(out, "{number}");
        }
    }
}

/// A JSON string literal with serde_json's escaping, written straight into `out`.
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = index + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::canonical_json;

    #[test]
    fn sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        assert_eq!(canonical_json(&value), r#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in ["plain", "quote\" back\\ slash", "tab\tnew\nline\rcr", "\u{0}\u{1f}\u{8}\u{c}", "ünï €"] {
            let value = json!({ text: [text, 1.5, -3, false] });
            assert_eq!(canonical_json(&value), serde_json::to_string(&value).unwrap_or_default(), "{text:?}");
        }
    }
}
