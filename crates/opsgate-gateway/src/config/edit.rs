//! `opsgate mcp add` and `remove`: changes to the project's `.opsgate/mcp.json`, never to the
//! global file. Entries are written in the Claude / VS Code form (`mcpServers`, `type`), which
//! other MCP clients read too; a file already using `servers` keeps it. Every other key of the
//! file is kept; the file is replaced atomically.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

/// A server to add, as the user described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewServer {
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String> },
    StreamableHttp { url: String, headers: BTreeMap<String, String> },
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("server {name:?} is already in {file}; pass --force to replace it")]
    Exists { name: String, file: String },
    #[error("server {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

/// The entry as it is written.
fn entry(server: &NewServer) -> Value {
    match server {
        NewServer::Stdio { command, args, env } => {
            let mut entry = json!({"type": "stdio", "command": command});
            if !args.is_empty() {
                entry["args"] = json!(args);
            }
            if !env.is_empty() {
                entry["env"] = json!(env);
            }
            entry
        }
        NewServer::StreamableHttp { url, headers } => {
            let mut entry = json!({"type": "http", "url": url});
            if !headers.is_empty() {
                entry["headers"] = json!(headers);
            }
            entry
        }
    }
}

/// The file's document (an empty one when it does not exist yet).
fn read(file: &Path) -> Result<Map<String, Value>, EditError> {
    let problem = |reason: String| EditError::File { file: file.display().to_string(), reason };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(error) => return Err(problem(format!("cannot read: {error}"))),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(document)) => Ok(document),
        Ok(_) => Err(problem("expected a JSON object with \"mcpServers\"; not changed".to_string())),
        Err(error) => Err(problem(format!("not valid JSON ({error}); fix it first, it was not changed"))),
    }
}

/// The key holding the servers: the one the file uses, else `mcpServers`.
fn servers_key(document: &Map<String, Value>) -> &'static str {
    if !document.contains_key("mcpServers") && document.contains_key("servers") { "servers" } else { "mcpServers" }
}

fn write(file: &Path, document: &Map<String, Value>) -> Result<(), EditError> {
    let problem = |reason: String| EditError::File { file: file.display().to_string(), reason };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|error| problem(format!("cannot create {}: {error}", dir.display())))?;
    }
    let mut text = serde_json::to_string_pretty(document).map_err(|error| problem(error.to_string()))?;
    text.push('\n');
    let temporary = file.with_extension("json.tmp");
    std::fs::write(&temporary, text).map_err(|error| problem(format!("cannot write: {error}")))?;
    std::fs::rename(&temporary, file).map_err(|error| problem(format!("cannot replace: {error}")))
}

/// The names of the servers in `file`, in file order.
pub fn names(file: &Path) -> Result<Vec<String>, EditError> {
    let document = read(file)?;
    Ok(match document.get(servers_key(&document)) {
        Some(Value::Object(servers)) => servers.keys().cloned().collect(),
        _ => Vec::new(),
    })
}

/// Adds `name` to `file`; an existing entry of that name is replaced only with `replace`. The
/// entry is checked the way opsgate will read it before anything is written.
pub fn add(file: &Path, name: &str, server: &NewServer, replace: bool) -> Result<(), EditError> {
    let entry = entry(server);
    let mut warnings = Vec::new();
    // `${VAR}` is written as typed and expanded when opsgate reads it; here any value will do.
    super::parse_entry(name, &entry, file, &|_| Some(String::new()), &mut warnings)
        .map_err(|reason| EditError::Invalid { name: name.to_string(), reason })?;
    let mut document = read(file)?;
    let key = servers_key(&document);
    let servers = document.entry(key).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else {
        return Err(EditError::File {
            file: file.display().to_string(),
            reason: format!("\"{key}\" is not an object; not changed"),
        });
    };
    if servers.contains_key(name) && !replace {
        return Err(EditError::Exists { name: name.to_string(), file: file.display().to_string() });
    }
    servers.insert(name.to_string(), entry);
    write(file, &document)
}

/// Removes `name` from `file`; returns whether it was there.
pub fn remove(file: &Path, name: &str) -> Result<bool, EditError> {
    let mut document = read(file)?;
    let key = servers_key(&document);
    let Some(Value::Object(servers)) = document.get_mut(key) else { return Ok(false) };
    if servers.remove(name).is_none() {
        return Ok(false);
    }
    write(file, &document)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_keeps_the_rest_of_the_file_refuses_duplicates_and_remove_takes_one_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(".opsgate/mcp.json");
        let memory = NewServer::Stdio { command: "npx".into(), args: vec!["-y".into()], env: BTreeMap::new() };
        add(&file, "memory", &memory, false).expect("added to a new file");
        std::fs::write(&file, r#"{"inputs": [1], "servers": {"old": {"command": "x"}}}"#).expect("rewrite");
        let remote = NewServer::StreamableHttp { url: "https://mcp.example/mcp".into(), headers: BTreeMap::new() };
        add(&file, "remote", &remote, false).expect("added");
        let document: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        assert_eq!(document["inputs"], json!([1]), "other keys stay");
        assert_eq!(document["servers"]["remote"], json!({"type": "http", "url": "https://mcp.example/mcp"}));
        assert!(document.get("mcpServers").is_none(), "the file's own key is used");

        assert!(matches!(add(&file, "remote", &remote, false), Err(EditError::Exists { .. })));
        add(&file, "remote", &remote, true).expect("replaced with --force");
        let bad = NewServer::Stdio { command: " ".into(), args: Vec::new(), env: BTreeMap::new() };
        assert!(matches!(add(&file, "Bad_Name", &bad, false), Err(EditError::Invalid { .. })));
        assert!(matches!(add(&file, "blank", &bad, false), Err(EditError::Invalid { .. })));

        assert_eq!(names(&file).expect("names"), ["old", "remote"]);
        assert!(remove(&file, "old").expect("removed"));
        assert!(!remove(&file, "old").expect("gone already"));
        assert_eq!(names(&file).expect("names"), ["remote"]);

        std::fs::write(&file, "{not json").expect("break it");
        assert!(matches!(remove(&file, "remote"), Err(EditError::File { .. })));
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "{not json", "a broken file is not touched");
    }
}
