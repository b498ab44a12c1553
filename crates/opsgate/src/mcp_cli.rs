//! `opsgate mcp`: the federated servers. `list` starts them as `serve` would and reports each;
//! `add` and `remove` edit the project's `.opsgate/mcp.json` (prompting in a terminal, flags for
//! scripts); `trust` accepts the changed definitions of quarantined tools.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use opsgate_gateway::config::edit::{self, NewServer};
use opsgate_gateway::{Quarantined, ServerStatus};
use opsgate_store::{AuditEntry, ToolPin};
use serde_json::json;

use crate::app::App;
use crate::config::{ProcessEnv, RuntimeConfig};

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Start every configured server and report: transport, state, tools, protocol, connect
    /// latency, last error, and quarantined tools.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a server to the project's .opsgate/mcp.json; asks for what is missing in a terminal.
    Add {
        /// The server's name: lowercase letters, digits and '-'; its tools become mcp__NAME__<tool>.
        name: Option<String>,
        #[arg(long, value_enum)]
        transport: Option<TransportArg>,
        /// The command that starts a stdio server.
        #[arg(long)]
        command: Option<String>,
        /// An argument of the command (repeat for several).
        #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
        /// An environment variable for the command: KEY=VALUE (repeat for several). Prefer
        /// KEY=${VAR} for credentials: the value is written into the file as given.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The Streamable HTTP endpoint of a remote server.
        #[arg(long)]
        url: Option<String>,
        /// An HTTP header: 'Name: value' (repeat for several).
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Replace an entry of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Remove a server from the project's .opsgate/mcp.json; without a name, pick one.
    Remove { name: Option<String> },
    /// Trust the changed definitions of a server's quarantined tools (NAME: a server, or one
    /// tool as mcp__SERVER__TOOL).
    Trust {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Stdio,
    #[value(alias = "streamable-http")]
    Http,
}

pub async fn run(config: RuntimeConfig, command: McpCommand) -> anyhow::Result<ExitCode> {
    let project_dir = std::env::current_dir().context("cannot read the current directory")?;
    let (project, global) = opsgate_gateway::config::default_paths(&project_dir);
    match command {
        McpCommand::List { json } => list(&config, &project, json).await,
        McpCommand::Add { name, transport, command, args, env, url, headers, force } => {
            let given = Given { name, transport, command, args, env, url, headers };
            add(&project, global.as_deref(), given, force)
        }
        McpCommand::Remove { name } => remove(&project, global.as_deref(), name),
        McpCommand::Trust { name, yes } => trust(&config, &name, yes).await,
    }
}

// ---------------------------------------------------------------------------------------------
// list

async fn list(config: &RuntimeConfig, project: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut app = App::build(config, &ProcessEnv).await?;
    let gateway = app.start_gateway(&ProcessEnv, None)?;
    gateway.settle().await;
    let statuses = gateway.statuses();
    let problems = app.federation_problems.clone();
    app.finish().await;

    let mut stdout = std::io::stdout().lock();
    let source_of = |status: &ServerStatus| {
        if status.source == project { "project".to_string() } else { status.source.display().to_string() }
    };
    if json {
        let servers: Vec<serde_json::Value> = statuses
            .iter()
            .map(|status| {
                json!({
                    "name": status.name,
                    "transport": status.transport,
                    "state": status.state.as_str(),
                    "tools": status.n_tools,
                    "protocol": status.protocol,
                    "direct_calls": status.direct_calls,
                    "connect_ms": status.connect_latency.map(|latency| latency.as_millis() as u64),
                    "last_error": status.last_error,
                    "source": source_of(status),
                    "quarantined": status.quarantined.iter().map(|quarantined| json!({
                        "tool": quarantined.pinned.tool,
                        "changed": quarantined.changed,
                        "pinned_at": quarantined.pinned.pinned_at,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&json!({"servers": servers, "problems": problems}))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if statuses.is_empty() && problems.is_empty() {
        writeln!(stdout, "no MCP servers configured; add one with: opsgate mcp add")?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|status| {
            vec![
                status.name.clone(),
                status.transport.to_string(),
                status.state.as_str().to_string(),
                status.n_tools.to_string(),
                status.protocol.clone().unwrap_or_else(|| "-".to_string()),
                status.connect_latency.map_or("-".to_string(), |latency| format!("{}ms", latency.as_millis())),
                source_of(status),
                status.last_error.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let header = ["NAME", "TRANSPORT", "STATE", "TOOLS", "PROTOCOL", "CONNECT", "SOURCE", "LAST ERROR"];
    crate::cli::write_table(&mut stdout, &header, &rows)?;
    for status in &statuses {
        for quarantined in &status.quarantined {
            writeln!(stdout, "quarantined: {}: {}", quarantined.tool_name(), quarantined.reason())?;
        }
    }
    for problem in &problems {
        writeln!(stdout, "problem: {problem}")?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// add

/// What the flags gave; `add` asks for the rest in a terminal.
struct Given {
    name: Option<String>,
    transport: Option<TransportArg>,
    command: Option<String>,
    args: Vec<String>,
    env: Vec<String>,
    url: Option<String>,
    headers: Vec<String>,
}

/// Questions on standard error, answers from standard input, one line each.
struct Prompter {
    lines: std::io::Lines<std::io::StdinLock<'static>>,
}

impl Prompter {
    /// A prompter when standard input is a terminal; scripts get none and must pass flags.
    fn for_terminal() -> Option<Prompter> {
        std::io::stdin().is_terminal().then(|| Prompter { lines: std::io::stdin().lock().lines() })
    }

    /// The trimmed answer; an error when input ends.
    fn ask(&mut self, question: &str) -> anyhow::Result<String> {
        eprint!("{question}");
        std::io::stderr().flush()?;
        match self.lines.next() {
            Some(line) => Ok(line?.trim().to_string()),
            None => bail!("input ended before the question was answered: {}", question.trim()),
        }
    }

    /// Asks until `check` accepts the answer, showing why it did not.
    fn ask_until(&mut self, question: &str, check: impl Fn(&str) -> Result<(), String>) -> anyhow::Result<String> {
        loop {
            let answer = self.ask(question)?;
            match check(&answer) {
                Ok(()) => return Ok(answer),
                Err(reason) => eprintln!("  {reason}"),
            }
        }
    }

    /// Lines until an empty one.
    fn ask_list(&mut self, question: &str, check: impl Fn(&str) -> Result<(), String>) -> anyhow::Result<Vec<String>> {
        let mut answers = Vec::new();
        loop {
            let answer = self.ask(question)?;
            if answer.is_empty() {
                return Ok(answers);
            }
            match check(&answer) {
                Ok(()) => answers.push(answer),
                Err(reason) => eprintln!("  {reason}"),
            }
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if opsgate_core::is_valid_server_name(name) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a server name: use lowercase letters, digits and '-', starting with a letter"))
    }
}

fn check_pair(text: &str, separator: char, what: &str) -> Result<(), String> {
    match text.split_once(separator) {
        Some((key, _)) if !key.trim().is_empty() => Ok(()),
        _ => Err(format!("{text:?}: write {what}")),
    }
}

fn pairs(texts: &[String], separator: char) -> BTreeMap<String, String> {
    texts
        .iter()
        .filter_map(|text| text.split_once(separator))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

fn add(project: &Path, global: Option<&Path>, given: Given, force: bool) -> anyhow::Result<ExitCode> {
    let mut prompter = Prompter::for_terminal();
    let script_hint = "pass it as a flag (opsgate mcp add --help), or run this in a terminal to be asked";
    let name = match (given.name, &mut prompter) {
        (Some(name), _) => name,
        (None, Some(prompter)) => prompter.ask_until("Name (its tools become mcp__NAME__<tool>): ", check_name)?,
        (None, None) => bail!("the server's name is missing: {script_hint}"),
    };
    check_name(&name).map_err(anyhow::Error::msg)?;
    for text in &given.env {
        check_pair(text, '=', "--env KEY=VALUE").map_err(anyhow::Error::msg)?;
    }
    for text in &given.headers {
        check_pair(text, ':', "--header 'Name: value'").map_err(anyhow::Error::msg)?;
    }
    let transport = match (given.transport, &given.command, &given.url) {
        (Some(transport), _, _) => transport,
        (None, Some(_), None) => TransportArg::Stdio,
        (None, None, Some(_)) => TransportArg::Http,
        (None, Some(_), Some(_)) => bail!("give --command (a stdio server) or --url (Streamable HTTP), not both"),
        (None, None, None) => match &mut prompter {
            Some(prompter) => {
                let answer = prompter.ask_until("Transport, stdio or http [stdio]: ", |answer| match answer {
                    "" | "stdio" | "http" | "streamable-http" => Ok(()),
                    other => Err(format!("{other:?}: answer stdio or http")),
                })?;
                if answer.is_empty() || answer == "stdio" { TransportArg::Stdio } else { TransportArg::Http }
            }
            None => bail!("give --command (a stdio server) or --url (Streamable HTTP): {script_hint}"),
        },
    };
    let server = match transport {
        TransportArg::Stdio => {
            if given.url.is_some() || !given.headers.is_empty() {
                bail!("--url and --header are for Streamable HTTP servers, not stdio ones");
            }
            let (command, args, env) = match (given.command, &mut prompter) {
                (Some(command), _) => (command, given.args, given.env),
                (None, Some(prompter)) => {
                    let non_empty =
                        |answer: &str| if answer.is_empty() { Err("a command is needed".to_string()) } else { Ok(()) };
                    let command = prompter.ask_until("Command: ", non_empty)?;
                    let args = prompter.ask("Arguments, separated by spaces (empty for none): ")?;
                    let args = given.args.into_iter().chain(args.split_whitespace().map(str::to_string)).collect();
                    let mut env = given.env;
                    env.extend(prompter.ask_list("Environment variable KEY=VALUE (empty to finish): ", |answer| {
                        check_pair(answer, '=', "KEY=VALUE")
                    })?);
                    (command, args, env)
                }
                (None, None) => bail!("a stdio server needs --command: {script_hint}"),
            };
            let env = pairs(&env, '=');
            for (key, value) in &env {
                if opsgate_gateway::env::looks_secret(key) && !value.contains("${") {
                    eprintln!(
                        "note: {key} is written into {} in clear; ${{{key}}} would read it from the environment instead",
                        project.display()
                    );
                }
            }
            NewServer::Stdio { command, args, env }
        }
        TransportArg::Http => {
            if given.command.is_some() || !given.args.is_empty() || !given.env.is_empty() {
                bail!("--command, --arg and --env are for stdio servers, not Streamable HTTP ones");
            }
            let (url, headers) = match (given.url, &mut prompter) {
                (Some(url), _) => (url, given.headers),
                (None, Some(prompter)) => {
                    let url = prompter.ask_until("URL (http:// or https://): ", |answer| {
                        if answer.starts_with("http://") || answer.starts_with("https://") {
                            Ok(())
                        } else {
                            Err(format!("{answer:?} is not an http:// or https:// URL"))
                        }
                    })?;
                    let mut headers = given.headers;
                    headers.extend(prompter.ask_list("HTTP header 'Name: value' (empty to finish): ", |answer| {
                        check_pair(answer, ':', "Name: value")
                    })?);
                    (url, headers)
                }
                (None, None) => bail!("a Streamable HTTP server needs --url: {script_hint}"),
            };
            NewServer::StreamableHttp { url, headers: pairs(&headers, ':') }
        }
    };
    edit::add(project, &name, &server, force)?;
    println!(
        "added {name} to {}; opsgate serve and opsgate stdio start it, opsgate mcp list checks it",
        project.display()
    );
    if let Some(global) = global
        && edit::names(global).unwrap_or_default().contains(&name)
    {
        println!("it replaces the entry of the same name in {} for this project", global.display());
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// remove

fn remove(project: &Path, global: Option<&Path>, name: Option<String>) -> anyhow::Result<ExitCode> {
    let names = edit::names(project)?;
    let name = match name {
        Some(name) => name,
        None => {
            if names.is_empty() {
                bail!("{} has no servers to remove", project.display());
            }
            let Some(mut prompter) = Prompter::for_terminal() else {
                bail!("name the server to remove (opsgate mcp remove NAME); servers here: {}", names.join(", "));
            };
            for (index, name) in names.iter().enumerate() {
                eprintln!("  {}) {name}", index + 1);
            }
            let answer = prompter.ask_until("Remove which server? (number or name, empty to cancel): ", |answer| {
                let by_number = answer.parse::<usize>().is_ok_and(|number| (1..=names.len()).contains(&number));
                if answer.is_empty() || by_number || names.iter().any(|name| name == answer) {
                    Ok(())
                } else {
                    Err(format!("{answer:?} is none of them"))
                }
            })?;
            if answer.is_empty() {
                println!("nothing removed");
                return Ok(ExitCode::SUCCESS);
            }
            match answer.parse::<usize>() {
                Ok(number) => names[number - 1].clone(),
                Err(_) => answer,
            }
        }
    };
    if edit::remove(project, &name)? {
        println!("removed {name} from {}", project.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(global) = global
        && edit::names(global).unwrap_or_default().contains(&name)
    {
        bail!(
            "{name} is in the global file {}; opsgate mcp remove changes only the project's {}",
            global.display(),
            project.display()
        );
    }
    let known = if names.is_empty() { "none".to_string() } else { names.join(", ") };
    bail!("no server {name} in {}; servers there: {known}", project.display())
}

// ---------------------------------------------------------------------------------------------
// trust

async fn trust(config: &RuntimeConfig, name: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let (server, tool) = match opsgate_core::split_federated_name(name) {
        Some((server, tool)) => (server.to_string(), Some(tool.to_string())),
        None => (name.to_string(), None),
    };
    check_name(&server).map_err(anyhow::Error::msg)?;
    let mut app = App::build(config, &ProcessEnv).await?;
    let result = trust_in(&mut app, config, &server, tool.as_deref(), yes).await;
    app.finish().await;
    result
}

async fn trust_in(
    app: &mut App,
    config: &RuntimeConfig,
    server: &str,
    tool: Option<&str>,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let gateway = app.start_gateway(&ProcessEnv, Some(server))?;
    gateway.settle().await;
    let Some(status) = gateway.statuses().into_iter().find(|status| status.name == server) else {
        bail!("no MCP server {server} is configured; opsgate mcp list shows the servers");
    };
    if status.state != opsgate_gateway::State::Ready {
        bail!(
            "server {server} is {} ({}): its current tool definitions cannot be read, so nothing was trusted",
            status.state.as_str(),
            status.last_error.as_deref().unwrap_or("no error recorded")
        );
    }
    let chosen: Vec<&Quarantined> = status
        .quarantined
        .iter()
        .filter(|quarantined| tool.is_none_or(|tool| quarantined.pinned.tool == tool))
        .collect();
    if chosen.is_empty() {
        let what = tool.map_or(format!("server {server}"), |tool| opsgate_core::federated_name(server, tool));
        println!("nothing to trust: {what} has no quarantined tool");
        return Ok(ExitCode::SUCCESS);
    }
    for quarantined in &chosen {
        describe_change(quarantined);
    }
    // Trusting re-opens a tool to agents: a person says yes, in a terminal or with --yes.
    if !yes {
        let Some(mut prompter) = Prompter::for_terminal() else {
            bail!("nothing trusted: pass --yes to trust the definitions above without being asked");
        };
        let answer = prompter.ask(&format!("Trust {} changed tool(s) of {server}? [y/N]: ", chosen.len()))?;
        if !matches!(answer.as_str(), "y" | "Y" | "yes") {
            println!("nothing trusted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let principal = crate::cli::local_principal(config);
    let now = opsgate_store::now_rfc3339();
    for quarantined in &chosen {
        let pin =
            ToolPin { pinned_at: now.clone(), trusted_by: Some(principal.id.clone()), ..quarantined.listed.clone() };
        app.store.trust_tool(&pin).await?;
        let arguments = opsgate_core::canonical::canonical_json(&json!({
            "tool": pin.tool, "hash": pin.hash, "previous_hash": quarantined.pinned.hash,
            "changed": quarantined.changed,
        }));
        let entry = AuditEntry {
            time: now.clone(),
            principal: principal.id.clone(),
            principal_kind: principal.kind.as_str().to_string(),
            client: Some("opsgate-cli".to_string()),
            tool: "mcp/trust".to_string(),
            server: Some(server.to_string()),
            target: None,
            environment: None,
            arguments_hash: opsgate_store::audit::sha256_hex(&arguments),
            arguments,
            decision: "allow".to_string(),
            reason: None,
            approval_id: None,
            approvers: None,
            outcome: "trusted".to_string(),
            error: None,
            result_bytes: 0,
            duration_us: 0,
        };
        app.mcp.pipeline.audit_log().record(entry).await?;
        println!("trusted {} as {}", quarantined.tool_name(), principal.id);
    }
    println!("a running opsgate lists the trusted tools again within a few seconds");
    Ok(ExitCode::SUCCESS)
}

/// What changed in a quarantined tool, field by field, for the person deciding.
fn describe_change(quarantined: &Quarantined) {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or_default();
    let (pinned, listed) = (parse(&quarantined.pinned.definition), parse(&quarantined.listed.definition));
    println!("{}: changed since {}", quarantined.tool_name(), quarantined.pinned.pinned_at);
    for field in &quarantined.changed {
        println!("  {field} was: {}", shorten(&pinned[field.as_str()]));
        println!("  {field} now: {}", shorten(&listed[field.as_str()]));
    }
}

/// A value on one line, cut at 300 characters.
fn shorten(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::Null => "(none)".to_string(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let one_line = text.replace('\n', " ");
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}… (cut)", &one_line[..cut]),
        None => one_line,
    }
}
