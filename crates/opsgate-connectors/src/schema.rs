//! JSON schemas for tool arguments, generated from the argument structs so that the schema an
//! agent sees and the parser that checks its call cannot drift apart.
//!
//! The generated schema is then made plain: subschemas inlined, and an optional argument written
//! as its type alone rather than "that type or null" with `"default": null`. Optional already
//! means "may be left out"; the null variants only cost tokens on every `tools/list`, and some
//! clients (Gemini's function calling among them) reject type arrays and `anyOf`.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// The input schema of a tool whose arguments deserialize into `T`.
pub(crate) fn input_schema<T: JsonSchema>() -> Map<String, Value> {
    let schema = SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut map = match schema.to_value() {
        Value::Object(map) => map,
        // A struct always yields an object schema; an empty one would still be a valid schema.
        _ => Map::new(),
    };
    // The meta-schema, the Rust type's name and its doc comment tell a client nothing.
    map.remove("$schema");
    map.remove("title");
    map.remove("description");
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for property in properties.values_mut() {
            if let Value::Object(property) = property {
                plain_optional(property);
            }
        }
    }
    map
}

/// `{"type": ["string", "null"], "default": null}` → `{"type": "string"}`, `null` out of an
/// `enum`, and `{"anyOf": [{…}, {"type": "null"}]}` → `{…}`.
fn plain_optional(property: &mut Map<String, Value>) {
    if property.get("default") == Some(&Value::Null) {
        property.remove("default");
    }
    if let Some(Value::Array(types)) = property.get("type") {
        let non_null: Vec<Value> = types.iter().filter(|kind| kind.as_str() != Some("null")).cloned().collect();
        if let [only] = non_null.as_slice() {
            property.insert("type".to_string(), only.clone());
        }
    }
    if let Some(Value::Array(values)) = property.get_mut("enum") {
        values.retain(|value| !value.is_null());
    }
    if let Some(Value::Array(variants)) = property.get("anyOf") {
        let non_null: Vec<&Value> =
            variants.iter().filter(|variant| variant.get("type") != Some(&Value::from("null"))).collect();
        if let [Value::Object(only)] = non_null.as_slice() {
            let only = only.clone();
            property.remove("anyOf");
            for (key, value) in only {
                // The property's own description wins over the type's doc comment.
                property.entry(key).or_insert(value);
            }
        }
    }
}

/// Sets `enum` on one property of an input schema, for values only known at start-up (the
/// names of the configured metric signals).
pub(crate) fn set_enum(schema: &mut Map<String, Value>, property: &str, values: &[&str]) {
    if let Some(Value::Object(slot)) = schema.get_mut("properties").and_then(|properties| properties.get_mut(property))
    {
        slot.insert("enum".to_string(), Value::from(values.to_vec()));
    }
}

/// Sets the description of one property of an input schema.
pub(crate) fn set_description(schema: &mut Map<String, Value>, property: &str, description: String) {
    if let Some(Value::Object(slot)) = schema.get_mut("properties").and_then(|properties| properties.get_mut(property))
    {
        slot.insert("description".to_string(), Value::String(description));
    }
}

/// Turns a `serde_json::json!` object literal into the map `ToolSpec` wants.
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
