//! `opsgate init` (a commented starter config) and `opsgate doctor` (what works, what does not,
//! and which tools will be exposed).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::{ProcessEnv, RuntimeConfig};

pub const STARTER: &str = r#"# opsgate configuration. Every key is optional; unknown keys are errors.
# Reference: docs/configuration.md. Environment variables OPSGATE_* override these values.

[server]
# listen = "127.0.0.1:7420"        # opsgate serve; env OPSGATE_LISTEN
# data_dir = "~/.local/share/opsgate"  # embedded SQLite store; env OPSGATE_DATA_DIR
# store = "postgres://opsgate@db/opsgate"  # PostgreSQL instead of SQLite; env OPSGATE_STORE
# call_timeout_seconds = 30         # a tool call running longer is cut off
# output_budget_tokens = 4000       # the most one result may cost an agent
# read_only = false                 # deny every write
# public_url = "https://opsgate.example.com"  # the URL clients use; the OAuth audience

[identity]
# local_roles = ["operator"]        # roles of the local user (stdio, opsgate call)
# allow_anonymous = false           # HTTP without credentials; default: only until the first API key
# API keys for HTTP clients: opsgate keys create --name laptop --roles operator

# Accept OAuth 2.1 access tokens from your identity provider (needs [server] public_url).
# [identity.oauth]
# issuer = "https://auth.example.com/"
# jwks_url = "https://auth.example.com/.well-known/jwks.json"
# required_scopes = ["opsgate:use"]
# [identity.oauth.roles]
# "opsgate:write" = ["operator"]

# Backends are named instances; tools take a `target` argument with these names.
# [connectors.prometheus.prod]
# url = "http://prometheus:9090"
# environment = "production"
# bearer_token = "env:PROMETHEUS_TOKEN"   # secrets are references: env:VAR or file:/path

# [connectors.alertmanager.prod]
# url = "http://alertmanager:9093"
# environment = "production"
# prometheus = "prod"               # the Prometheus that evaluates its alert rules

# Override or add a named signal for get_service_metrics ({selector} and {window} are filled in).
# [metrics.signals.error_rate]
# promql = 'sum(rate(http_requests_total{{selector},code=~"5.."}[{window}])) / sum(rate(http_requests_total{{selector}}[{window}]))'

# [[environments]]
# name = "production"
# protected = true

# The service catalog: Backstage catalog-info.yaml files (or directories of them) and Markdown
# runbooks, relative to this file; reloaded when they change. Annotate a component with
# opsgate.dev/prometheus-target = "prod" for live health in get_service_dependencies.
# [catalog]
# paths = ["catalog/"]
# runbooks = ["runbooks/"]
"#;

pub fn init(path: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if path.exists() && !force {
        bail!("{} already exists; pass --force to replace it", path.display());
    }
    std::fs::write(path, STARTER).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub async fn doctor(config: RuntimeConfig) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let mut n_problems = 0;
    match &config.source {
        Some(path) => writeln!(stdout, "config    ok    {}", path.display())?,
        None => writeln!(stdout, "config    ok    no file; defaults in use")?,
    }
    match crate::app::open_store(&config).await {
        Ok(store) => {
            writeln!(
                stdout,
                "store     ok    {} at {}",
                store.backend(),
                opsgate_store::redact_url(&config.store_location())
            )?;
            n_problems += doctor_mcp(&store, &mut stdout).await?;
            store.close().await;
        }
        Err(error) => {
            n_problems += 1;
            writeln!(stdout, "store     FAIL  {error:#}")?;
        }
    }
    let client = reqwest::Client::builder().timeout(crate::cli::DOCTOR_TIMEOUT).build()?;
    let backends = config
        .prometheus
        .iter()
        .map(|(name, instance)| ("prometheus", name, instance.url.clone()))
        .chain(config.alertmanager.iter().map(|(name, instance)| ("alertmanager", name, instance.url.clone())));
    for (kind, name, url) in backends {
        let probe = format!("{}/-/ready", url.trim_end_matches('/'));
        match client.get(&probe).send().await {
            Ok(response) if response.status().is_success() => {
                writeln!(stdout, "{kind:<12} ok    {name} at {url}")?;
            }
            Ok(response) => {
                n_problems += 1;
                writeln!(stdout, "{kind:<12} FAIL  {name} at {url}: /-/ready answered {}", response.status())?;
            }
            Err(error) => {
                n_problems += 1;
                writeln!(stdout, "{kind:<12} FAIL  {name} at {url}: {}", error_chain(&error))?;
            }
        }
    }
    n_problems += crate::catalog::doctor(&config, &mut stdout).await?;
    match crate::app::registry(&config, &ProcessEnv) {
        Ok(registry) => {
            let tools = registry.tools();
            let names: Vec<&str> = tools.iter().map(|tool| tool.spec.name.as_str()).collect();
            writeln!(stdout, "tools     {}    {}", names.len(), names.join(", "))?;
            if names.is_empty() {
                writeln!(stdout, "          no backends configured: run opsgate init and add a connector")?;
            }
        }
        Err(error) => {
            n_problems += 1;
            writeln!(stdout, "tools     FAIL  {error:#}")?;
        }
    }
    Ok(if n_problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Starts the federated servers of the `mcp.json` files as `serve` would and reports each;
/// returns how many problems it found.
async fn doctor_mcp(store: &opsgate_store::Store, stdout: &mut impl Write) -> anyhow::Result<usize> {
    let loaded = crate::app::load_federation(&ProcessEnv)?;
    let mut n_problems = 0;
    for problem in &loaded.problems {
        n_problems += usize::from(problem.skipped);
        writeln!(stdout, "mcp       {}  {problem}", if problem.skipped { "FAIL" } else { "warn" })?;
    }
    if loaded.servers.is_empty() {
        return Ok(n_problems);
    }
    let registry = opsgate_server::Registry::default();
    let catalog = opsgate_gateway::Catalog::new(registry.changes().clone());
    let gateway = opsgate_gateway::Gateway::start(&registry, store, &catalog, loaded.servers);
    gateway.settle().await;
    let statuses = gateway.statuses();
    gateway.shutdown().await;
    for status in statuses {
        let name = format!("{} ({})", status.name, status.transport);
        if status.state == opsgate_gateway::State::Ready {
            let latency =
                status.connect_latency.map_or(String::new(), |latency| format!(", {}ms", latency.as_millis()));
            let protocol = status.protocol.as_deref().unwrap_or("?");
            writeln!(stdout, "mcp       ok    {name}: {} tools, MCP {protocol}{latency}", status.n_tools)?;
        } else {
            n_problems += 1;
            let error = status.last_error.as_deref().unwrap_or("no answer yet");
            writeln!(stdout, "mcp       FAIL  {name}: {}: {error}", status.state.as_str())?;
        }
        for quarantined in &status.quarantined {
            n_problems += 1;
            writeln!(stdout, "mcp       FAIL  {} quarantined: {}", quarantined.tool_name(), quarantined.reason())?;
        }
    }
    Ok(n_problems)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
