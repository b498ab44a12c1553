//! The command line: `serve`, `stdio`, `call`, `audit`, `keys`, `init`, `doctor`, `approvals`,
//! `policy`, `mcp`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use opsgate_core::{NoClient, Principal};
use opsgate_server::http::{AppState, HttpConfig};
use opsgate_server::identity::API_KEY_RECHECK;
use opsgate_server::{CallOutcome, CallRequest, Identity, OpsgateMcp};
use opsgate_store::{Revocation, Store};
use rmcp::ServiceExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{self, CliOverrides, ProcessEnv, RuntimeConfig};

#[derive(Debug, Parser)]
#[command(name = "opsgate", version, about = "A governed MCP server and gateway for operations work")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (default: ./opsgate.toml, then $XDG_CONFIG_HOME/opsgate/opsgate.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded store (env OPSGATE_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL instead of SQLite: postgres://user@host/db (env OPSGATE_STORE).
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Deny every write, whatever the policy says.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "OPSGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over Streamable HTTP at /mcp, plus /healthz and /metrics.
    Serve {
        /// Address to listen on (default 127.0.0.1:7420; env OPSGATE_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Serve MCP over stdin/stdout (logs go to stderr).
    Stdio,
    /// Call a tool through the full pipeline and print its result.
    Call {
        tool: String,
        /// An argument: key=value (a string) or key:=json (a number, boolean, list or object).
        #[arg(long = "arg", value_name = "K=V")]
        arguments: Vec<String>,
        /// Print the structured result as JSON instead of the text rendering.
        #[arg(long)]
        json: bool,
    },
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create, list and revoke API keys for HTTP clients.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write a commented starter opsgate.toml.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "opsgate.toml")]
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the configuration, the store and every backend; list the tools that will be exposed.
    Doctor,
    /// List, show, approve and reject approval requests (as the local user).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Test the policy or evaluate it on an input document.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List, add, remove and trust federated MCP servers (.opsgate/mcp.json).
    #[command(subcommand)]
    Mcp(crate::mcp_cli::McpCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Requests, newest first.
    List {
        /// Only this status: pending, approved, rejected, expired, executing, executed, failed, all.
        #[arg(long, default_value = "pending")]
        status: Option<String>,
        /// One JSON object per request.
        #[arg(long)]
        json: bool,
    },
    /// One request with its plan, arguments (redacted) and decisions.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a request; the last required approval runs the call.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request; it will not run.
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run every `test_` rule of the default bundle and of the [policy] files.
    Test {
        /// One JSON object per test instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the decision for an input document (docs/policy.md describes its fields).
    Eval {
        /// The input document, a JSON file; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest records.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
    },
    /// Export every record.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Check the hash chain; exits non-zero naming the first bad record.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key. It is printed once, on stdout; only its SHA-256 is stored.
    Create {
        /// A unique name; requests with the key act as principal key:NAME.
        #[arg(long)]
        name: String,
        /// Roles the key grants, comma-separated.
        #[arg(long, value_delimiter = ',', value_name = "ROLE,...")]
        roles: Vec<String>,
        /// Print the key and its details as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys: name, prefix, roles, created, revoked. Never the keys themselves.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name. A running opsgate refuses it within 5 seconds (its recheck interval).
    Revoke { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    // Logs always go to stderr: in stdio mode stdout belongs to the protocol.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

fn load_config(global: &GlobalArgs, listen: Option<String>) -> anyhow::Result<RuntimeConfig> {
    let overrides = CliOverrides {
        config: global.config.clone(),
        listen,
        data_dir: global.data_dir.clone(),
        store: global.store.clone(),
        read_only: global.read_only,
    };
    Ok(config::load(&overrides, &ProcessEnv)?)
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { listen } => serve(load_config(&cli.global, listen)?).await,
        Command::Stdio => stdio(load_config(&cli.global, None)?).await,
        Command::Call { tool, arguments, json } => call(load_config(&cli.global, None)?, tool, arguments, json).await,
        Command::Audit(command) => audit(load_config(&cli.global, None)?, command).await,
        Command::Keys(command) => keys(load_config(&cli.global, None)?, command).await,
        Command::Init { path, force } => crate::starter::init(&path, force),
        Command::Doctor => crate::starter::doctor(load_config(&cli.global, None)?).await,
        Command::Approvals(command) => crate::approvals_cli::run(load_config(&cli.global, None)?, command).await,
        Command::Mcp(command) => crate::mcp_cli::run(load_config(&cli.global, None)?, command).await,
        Command::Policy(PolicyCommand::Test { json }) => {
            crate::policy_files::test_command(&load_config(&cli.global, None)?, json)
        }
        Command::Policy(PolicyCommand::Eval { input }) => {
            crate::policy_files::eval_command(&load_config(&cli.global, None)?, &input)
        }
    }
}

/// The local OS user, the identity of stdio and CLI calls.
pub fn local_principal(config: &RuntimeConfig) -> Principal {
    let name = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_string());
    Principal::local_user(name, config.local_roles.clone())
}

async fn serve(config: RuntimeConfig) -> anyhow::Result<ExitCode> {
    let mut app = App::build(&config, &ProcessEnv).await?;
    app.start_gateway(&ProcessEnv, None)?;
    app.run_in_background(&config).await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let mut http = HttpConfig::for_listen_address(address);
    if let Some(hosts) = &config.allowed_hosts {
        http.allowed_hosts = hosts.clone();
    }
    if let Some(origins) = &config.allowed_origins {
        http.allowed_origins = origins.clone();
    }
    http.max_body_bytes = config.max_body_bytes;
    if let Some(public_url) = &config.public_url {
        http.public_url = public_url.clone();
    }
    let identity = Arc::new(Identity::new(config.identity.clone(), app.store.clone())?);
    let state = AppState {
        mcp: app.mcp.clone(),
        store: app.store.clone(),
        http,
        identity,
        streams: CancellationToken::new(),
        hooks: Some((app.events.clone(), app.hooks.clone())),
    };
    tracing::info!(%address, store = app.store.backend(), n_tools = app.mcp.pipeline.registry().len(), "opsgate serving MCP at /mcp");
    opsgate_server::http::run(listener, state, shutdown_signal()).await.context("HTTP server failed")?;
    app.finish().await;
    tracing::info!("opsgate stopped");
    Ok(ExitCode::SUCCESS)
}

async fn stdio(config: RuntimeConfig) -> anyhow::Result<ExitCode> {
    let mut app = App::build(&config, &ProcessEnv).await?;
    app.start_gateway(&ProcessEnv, None)?;
    app.run_in_background(&config).await;
    let handler = OpsgateMcp::new(app.mcp.clone(), local_principal(&config));
    // Pipes (how MCP clients start a stdio server) are read on the IO reactor, not through a
    // blocking thread per read; a terminal or a file falls back to the blocking handles.
    let service = handler.serve(rmcp::transport::stdio_pipes()).await.context("MCP handshake on stdio failed")?;
    tokio::select! {
        result = service.waiting() => {
            if let Err(error) = result {
                tracing::warn!(%error, "stdio session ended with an error");
            }
        }
        () = shutdown_signal() => tracing::info!("signal received; stopping"),
    }
    app.finish().await;
    Ok(ExitCode::SUCCESS)
}

/// Parses `key=value` (string) and `key:=json` arguments.
pub fn parse_call_arguments(arguments: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for argument in arguments {
        if let Some((key, json)) = argument.split_once(":=") {
            let value: Value = serde_json::from_str(json)
                .with_context(|| format!("--arg {argument}: the value after := is not JSON"))?;
            map.insert(key.to_string(), value);
        } else if let Some((key, value)) = argument.split_once('=') {
            map.insert(key.to_string(), Value::String(value.to_string()));
        } else {
            bail!("--arg {argument}: write key=value or key:=json");
        }
    }
    Ok(map)
}

async fn call(config: RuntimeConfig, tool: String, arguments: Vec<String>, json: bool) -> anyhow::Result<ExitCode> {
    let arguments = parse_call_arguments(&arguments)?;
    let mut app = App::build(&config, &ProcessEnv).await?;
    app.reach_tool(&tool, &ProcessEnv).await?;
    let outcome = app
        .mcp
        .pipeline
        .call(CallRequest {
            principal: local_principal(&config),
            client: Some("opsgate-cli".to_string()),
            tool,
            arguments,
            channel: Arc::new(NoClient),
            cancel: CancellationToken::new(),
        })
        .await;
    app.finish().await;
    let mut stdout = std::io::stdout().lock();
    let code = match outcome {
        CallOutcome::Ok(rendered) | CallOutcome::PendingApproval(rendered) => {
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&rendered.structured)?)?;
            } else {
                writeln!(stdout, "{}", rendered.text)?;
            }
            ExitCode::SUCCESS
        }
        CallOutcome::ToolError(message)
        | CallOutcome::Denied(message)
        | CallOutcome::UnknownTool(message)
        | CallOutcome::InvalidRequest(message)
        | CallOutcome::Internal(message) => {
            eprintln!("opsgate: {message}");
            ExitCode::FAILURE
        }
        CallOutcome::InputRequired { .. } | CallOutcome::MissingClientCapability(_) => {
            eprintln!("opsgate: this tool asks the client for input, which `opsgate call` cannot give");
            ExitCode::FAILURE
        }
    };
    Ok(code)
}

async fn audit(config: RuntimeConfig, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let store = crate::app::open_store(&config).await?;
    let mut stdout = std::io::stdout().lock();
    let code = match command {
        AuditCommand::Tail { lines } => {
            for record in store.audit_tail(lines.max(1)).await? {
                let entry = &record.entry;
                writeln!(
                    stdout,
                    "{:>6}  {}  {}  {}  {}  {}{}",
                    record.seq,
                    entry.time,
                    entry.principal,
                    entry.tool,
                    entry.decision,
                    entry.outcome,
                    entry.target.as_deref().map(|target| format!("  target={target}")).unwrap_or_default()
                )?;
            }
            ExitCode::SUCCESS
        }
        AuditCommand::Export { format: ExportFormat::Jsonl } => {
            let mut after = 0;
            loop {
                let page = store.audit_after(after, 1_000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for record in &page {
                    writeln!(stdout, "{}", serde_json::to_string(record)?)?;
                }
            }
            ExitCode::SUCCESS
        }
        AuditCommand::Verify => {
            let report = store.verify_audit().await?;
            match report.first_bad {
                None => {
                    writeln!(stdout, "audit chain intact: {} records", report.n_records)?;
                    ExitCode::SUCCESS
                }
                Some((seq, why)) => {
                    writeln!(stdout, "audit chain broken at record {seq}: {why}")?;
                    ExitCode::FAILURE
                }
            }
        }
    };
    store.close().await;
    Ok(code)
}

async fn keys(config: RuntimeConfig, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = crate::app::open_store(&config).await?;
    let result = run_keys(&store, &config, command).await;
    store.close().await;
    result
}

async fn run_keys(store: &Store, config: &RuntimeConfig, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match command {
        KeysCommand::Create { name, roles, json } => {
            let first = !store.any_api_keys().await?;
            let created = store.create_api_key(&name, &roles).await?;
            let key = &created.key;
            if json {
                let document = serde_json::json!({
                    "name": key.name, "roles": key.roles, "prefix": key.prefix,
                    "created_at": key.created_at, "key": created.secret,
                });
                writeln!(stdout, "{}", serde_json::to_string_pretty(&document)?)?;
            } else {
                writeln!(stdout, "{}", created.secret)?;
            }
            eprintln!(
                "created API key {:?} with roles [{}]; the key above is shown only this once and cannot be \
                 shown again: store it now",
                key.name,
                key.roles.join(", ")
            );
            if first && config.identity.allow_anonymous.is_none() && config.identity.oauth.is_none() {
                eprintln!(
                    "note: with an API key in the store, HTTP requests without credentials are refused (a running \
                     opsgate notices within {}s); set [identity] allow_anonymous = true to keep them",
                    API_KEY_RECHECK.as_secs()
                );
            }
        }
        KeysCommand::List { json } => {
            let keys = store.list_api_keys().await?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&keys)?)?;
            } else if keys.is_empty() {
                writeln!(stdout, "no API keys; create one with: opsgate keys create --name NAME --roles ROLE,...")?;
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|key| {
                        vec![
                            key.name.clone(),
                            key.prefix.clone(),
                            if key.roles.is_empty() { "-".to_string() } else { key.roles.join(",") },
                            key.created_at.clone(),
                            key.revoked_at.clone().unwrap_or_else(|| "-".to_string()),
                        ]
                    })
                    .collect();
                write_table(&mut stdout, &["NAME", "PREFIX", "ROLES", "CREATED", "REVOKED"], &rows)?;
            }
        }
        KeysCommand::Revoke { name } => match store.revoke_api_key(&name).await? {
            Revocation::Revoked { at } => writeln!(
                stdout,
                "revoked API key {name:?} at {at}; a running opsgate refuses it within {}s",
                API_KEY_RECHECK.as_secs()
            )?,
            Revocation::AlreadyRevoked { at } => writeln!(stdout, "API key {name:?} was already revoked at {at}")?,
            Revocation::UnknownName => bail!("no API key named {name:?}; opsgate keys list shows the names"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows under a header, each column as wide as its widest cell.
pub fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|title| title.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// How long `doctor` waits for each backend.
pub const DOCTOR_TIMEOUT: Duration = Duration::from_secs(3);
