//! Federated servers from `mcp.json`: the project file (`.opsgate/mcp.json`) merged over the
//! global one (`~/.config/opsgate/mcp.json`), a project entry replacing the global entry of the
//! same name.
//!
//! Both common shapes are read: opsgate's `transport`-tagged entries and the Claude / VS Code
//! form (`mcpServers` or `servers`, `command` ⇒ stdio, `url` ⇒ HTTP, or a `type`). An entry that
//! cannot be used is reported with its file, name and reason and left out; the others start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opsgate_core::{Effect, is_valid_server_name};
use serde_json::{Map, Value};

pub mod edit;

/// How long a server may take to start and answer `initialize`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one tool call may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Calls in flight to one server at a time; more wait for a slot.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String>, cwd: Option<PathBuf> },
    StreamableHttp { url: String, headers: BTreeMap<String, String> },
}

impl Transport {
    pub fn label(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::StreamableHttp { .. } => "streamable-http",
        }
    }
}

/// One federated server as configured.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub name: String,
    pub transport: Transport,
    /// The file the entry came from.
    pub source: PathBuf,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    pub max_concurrency: usize,
    /// Variables passed to a stdio child although their names look like secrets.
    pub allow_env: Vec<String>,
    /// Effects that replace what a tool's annotations say, by the server's tool name.
    pub effects: BTreeMap<String, Effect>,
}

// Header and environment values may hold credentials: never printed.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = match &self.transport {
            Transport::Stdio { command, args, env, .. } => {
                format!("stdio {command} {args:?} env {:?}", env.keys().collect::<Vec<_>>())
            }
            Transport::StreamableHttp { url, headers } => {
                format!("streamable-http {url} headers {:?}", headers.keys().collect::<Vec<_>>())
            }
        };
        formatter
            .debug_struct("ServerConfig")
            .field("name", &self.name)
            .field("transport", &transport)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// An entry or file that could not be used, or a key that was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// `None` when the whole file is the problem.
    pub server: Option<String>,
    pub reason: String,
    /// Whether the entry was left out (otherwise it starts and the problem is a warning).
    pub skipped: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.server {
            Some(server) => write!(formatter, "{}: server {server:?}: {}", self.file.display(), self.reason)?,
            None => write!(formatter, "{}: {}", self.file.display(), self.reason)?,
        }
        if self.skipped {
            formatter.write_str(" (skipped)")?;
        }
        Ok(())
    }
}

/// The merged configuration.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// By name.
    pub servers: Vec<ServerConfig>,
    pub problems: Vec<Problem>,
}

/// Where the two files are: `<dir>/.opsgate/mcp.json` and `$XDG_CONFIG_HOME/opsgate/mcp.json`
/// (else `~/.config/opsgate/mcp.json`; `None` without a home).
pub fn default_paths(project_dir: &Path) -> (PathBuf, Option<PathBuf>) {
    let project = project_dir.join(".opsgate").join("mcp.json");
    let config_home =
        std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|dir| !dir.is_empty()).map(|home| PathBuf::from(home).join(".config"))
        });
    (project, config_home.map(|dir| dir.join("opsgate").join("mcp.json")))
}

/// Reads the global file, then the project file over it. Missing files are no problem.
/// `lookup` expands `${VAR}` in values (the process environment in production).
pub fn load(project: &Path, global: Option<&Path>, lookup: &dyn Fn(&str) -> Option<String>) -> Loaded {
    let mut loaded = Loaded::default();
    let mut by_name: BTreeMap<String, ServerConfig> = BTreeMap::new();
    for file in global.into_iter().chain([project]) {
        for server in read_file(file, lookup, &mut loaded.problems) {
            by_name.insert(server.name.clone(), server);
        }
    }
    loaded.servers = by_name.into_values().collect();
    loaded
}

/// The entries of one file, in file order, with its problems added to `problems`.
fn read_file(file: &Path, lookup: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<Problem>) -> Vec<ServerConfig> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            problems.push(file_problem(file, format!("cannot read: {error}")));
            return Vec::new();
        }
    };
    let document: Value = match serde_json::from_str(&text) {
        Ok(document) => document,
        Err(error) => {
            problems.push(file_problem(file, format!("not valid JSON: {error}")));
            return Vec::new();
        }
    };
    let Some(root) = document.as_object() else {
        problems.push(file_problem(file, "expected a JSON object with \"mcpServers\"".to_string()));
        return Vec::new();
    };
    let entries = match (root.get("mcpServers"), root.get("servers")) {
        (Some(Value::Object(entries)), _) | (None, Some(Value::Object(entries))) => entries,
        (None, None) => return Vec::new(),
        _ => {
            problems.push(file_problem(file, "\"mcpServers\" must be an object of servers by name".to_string()));
            return Vec::new();
        }
    };
    let mut servers = Vec::new();
    for (name, entry) in entries {
        let mut warnings = Vec::new();
        match parse_entry(name, entry, file, lookup, &mut warnings) {
            Ok(server) => servers.push(server),
            Err(reason) => {
                problems.push(Problem { file: file.to_path_buf(), server: Some(name.clone()), reason, skipped: true })
            }
        }
        problems.extend(warnings.into_iter().map(|reason| Problem {
            file: file.to_path_buf(),
            server: Some(name.clone()),
            reason,
            skipped: false,
        }));
    }
    servers
}

fn file_problem(file: &Path, reason: String) -> Problem {
    Problem { file: file.to_path_buf(), server: None, reason, skipped: true }
}

/// Keys other MCP clients write into their entries; read by them, harmless here.
const OTHER_CLIENTS_KEYS: &[&str] =
    &["description", "disabled", "autoApprove", "alwaysAllow", "envFile", "timeout", "trust", "name"];

fn parse_entry(
    name: &str,
    entry: &Value,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<ServerConfig, String> {
    if !is_valid_server_name(name) {
        return Err(
            "the name must match ^[a-z][a-z0-9-]*$ (at most 64 characters): it becomes the mcp__<server>__ tool prefix"
                .to_string(),
        );
    }
    let Some(entry) = entry.as_object() else {
        return Err("the entry must be an object".to_string());
    };
    let kind = match (entry.get("transport"), entry.get("type")) {
        (Some(value), _) | (None, Some(value)) => {
            let Some(kind) = value.as_str() else { return Err("\"transport\" must be a string".to_string()) };
            match kind {
                "stdio" => "stdio",
                "streamable-http" | "streamableHttp" | "http" => "http",
                "sse" => {
                    return Err(
                        "the SSE transport is not supported; use the server's Streamable HTTP endpoint".to_string()
                    );
                }
                other => return Err(format!("unknown transport {other:?}: use \"stdio\" or \"streamable-http\"")),
            }
        }
        (None, None) if entry.contains_key("command") => "stdio",
        (None, None) if entry.contains_key("url") => "http",
        (None, None) => return Err("needs \"command\" (stdio) or \"url\" (Streamable HTTP)".to_string()),
    };
    let mut known: Vec<&str> = vec![
        "transport",
        "type",
        "connect_timeout_seconds",
        "call_timeout_seconds",
        "max_concurrency",
        "allow_env",
        "effects",
    ];
    let transport = if kind == "stdio" {
        known.extend(["command", "args", "env", "cwd"]);
        let command = match entry.get("command") {
            Some(Value::String(command)) if !command.trim().is_empty() => expand(command, lookup)?,
            Some(_) => return Err("\"command\" must be a non-empty string".to_string()),
            None => return Err("a stdio server needs \"command\"".to_string()),
        };
        let args = match entry.get("args") {
            None => Vec::new(),
            Some(Value::Array(args)) => args
                .iter()
                .map(|arg| {
                    arg.as_str()
                        .ok_or_else(|| "\"args\" must be an array of strings".to_string())
                        .and_then(|arg| expand(arg, lookup))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("\"args\" must be an array of strings".to_string()),
        };
        let env = string_map(entry.get("env"), "env", lookup)?;
        let cwd = match entry.get("cwd") {
            None => None,
            Some(Value::String(cwd)) => {
                let cwd = PathBuf::from(expand(cwd, lookup)?);
                // Relative to the file's project, as the file's author sees it.
                Some(if cwd.is_relative() {
                    file.parent().and_then(Path::parent).unwrap_or(Path::new(".")).join(cwd)
                } else {
                    cwd
                })
            }
            Some(_) => return Err("\"cwd\" must be a string".to_string()),
        };
        Transport::Stdio { command, args, env, cwd }
    } else {
        known.extend(["url", "headers"]);
        let url = match entry.get("url") {
            Some(Value::String(url)) => expand(url, lookup)?,
            Some(_) => return Err("\"url\" must be a string".to_string()),
            None => return Err("a Streamable HTTP server needs \"url\"".to_string()),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("\"url\" must be an http:// or https:// URL, got {url:?}"));
        }
        let headers = string_map(entry.get("headers"), "headers", lookup)?;
        Transport::StreamableHttp { url, headers }
    };
    for key in entry.keys() {
        if !known.contains(&key.as_str()) && !OTHER_CLIENTS_KEYS.contains(&key.as_str()) {
            warnings.push(format!("unknown key {key:?} ignored"));
        }
    }
    Ok(ServerConfig {
        name: name.to_string(),
        transport,
        source: file.to_path_buf(),
        connect_timeout: seconds(entry, "connect_timeout_seconds")?.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        call_timeout: seconds(entry, "call_timeout_seconds")?.unwrap_or(DEFAULT_CALL_TIMEOUT),
        max_concurrency: match entry.get("max_concurrency") {
            None => DEFAULT_MAX_CONCURRENCY,
            Some(value) => match value.as_u64() {
                Some(n @ 1..=1024) => n as usize,
                _ => return Err("\"max_concurrency\" must be a whole number from 1 to 1024".to_string()),
            },
        },
        allow_env: match entry.get("allow_env") {
            None => Vec::new(),
            Some(Value::Array(names)) => names
                .iter()
                .map(|name| {
                    name.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "\"allow_env\" must be an array of variable names".to_string())
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("\"allow_env\" must be an array of variable names".to_string()),
        },
        effects: match entry.get("effects") {
            None => BTreeMap::new(),
            Some(Value::Object(effects)) => effects
                .iter()
                .map(|(tool, effect)| match effect.as_str() {
                    Some("read") => Ok((tool.clone(), Effect::Read)),
                    Some("write") => Ok((tool.clone(), Effect::Write)),
                    Some("destructive") => Ok((tool.clone(), Effect::Destructive)),
                    _ => Err(format!("effect of {tool:?} must be \"read\", \"write\" or \"destructive\"")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("\"effects\" must be an object of tool name to effect".to_string()),
        },
    })
}

fn seconds(entry: &Map<String, Value>, key: &str) -> Result<Option<Duration>, String> {
    match entry.get(key) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(Some(Duration::from_secs_f64(seconds))),
            _ => Err(format!("{key:?} must be a number of seconds above 0 and at most 86400")),
        },
    }
}

fn string_map(
    value: Option<&Value>,
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    match value {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, value)| match value.as_str() {
                Some(text) => Ok((name.clone(), expand(text, lookup)?)),
                None => Err(format!("{key:?}: the value of {name:?} must be a string")),
            })
            .collect(),
        Some(_) => Err(format!("{key:?} must be an object of strings")),
    }
}

/// Expands `${VAR}` (as Claude Code and VS Code do), so that a file can name a credential
/// instead of holding it. An unset variable is an error naming it.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed ${{ in {text:?}"));
        };
        let name = &after[..end];
        let (name, default) = match name.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (name, None),
        };
        match lookup(name).or_else(|| default.map(str::to_string)) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
