//! Wiring: from a `RuntimeConfig` to a running pipeline — store, audit writer, connectors,
//! registry, MCP state. Every command that calls tools builds it the same way.

use std::sync::Arc;

use anyhow::Context;
use opsgate_connectors::alertmanager::{
    AlertmanagerClient, AlertmanagerClients, alertmanager_tools, check_prometheus_links,
};
use opsgate_connectors::prometheus::{PrometheusClient, PrometheusClients, SignalCatalog, prometheus_tools};
use opsgate_core::OutputBudget;
use opsgate_server::approvals::{ApprovalQueue, ApprovalSettings, ApprovalStatusTool};
use opsgate_server::metrics::Metrics;
use opsgate_server::{McpState, Pipeline, PipelineConfig, PolicyHandle, Registry, TargetCatalog};
use opsgate_store::{AuditLog, AuditWriterConfig, Notices, Store};

use crate::config::{Env, RuntimeConfig};
use crate::policy_files;

pub struct App {
    pub store: Store,
    pub mcp: Arc<McpState>,
    /// The audit writer task; it ends once every `AuditLog` handle is dropped and the queue is
    /// committed.
    pub audit_writer: tokio::task::JoinHandle<()>,
    /// Reloads the policy files when they change (none when there are none).
    pub policy_watch: Option<tokio::task::JoinHandle<()>>,
    /// The service catalog as loaded (none without `[catalog]`); `run_in_background` watches it.
    pub services: Option<crate::catalog::LoadedCatalog>,
    /// Marks approval requests whose time ran out as expired.
    pub expiry_sweep: tokio::task::JoinHandle<()>,
    /// The federated MCP servers of `.opsgate/mcp.json` and the global `mcp.json`, once
    /// `start_gateway` started them (commands that call no federated tool never do).
    pub gateway: Option<opsgate_gateway::Gateway>,
    /// The federated servers' resources and prompts, which the MCP surface serves beside
    /// opsgate's own; filled by the gateway.
    pub catalog: opsgate_gateway::Catalog,
    /// What could not be used in the `mcp.json` files, once `start_gateway` read them.
    pub federation_problems: Vec<opsgate_gateway::Problem>,
    /// Where webhooks and the pipeline store events.
    pub events: opsgate_server::events::EventSink,
    /// `/hooks/<source>` with the secrets resolved.
    pub hooks: opsgate_server::hooks_api::HooksConfig,
    /// Announcements between the processes on the store: new events, approval decisions.
    pub notices: Notices,
    /// What `run_in_background` started for the commands that keep running: the announcer of
    /// service updates, retention, the catalog's watcher.
    pub background: Vec<tokio::task::JoinHandle<()>>,
}

/// Reads each configured hook's secret; a reference that cannot be read stops start-up, naming
/// the key.
fn hooks_config(
    settings: &crate::config::HooksSettings,
    env: &impl Env,
) -> anyhow::Result<opsgate_server::hooks_api::HooksConfig> {
    let mut config =
        opsgate_server::hooks_api::HooksConfig { max_body_bytes: settings.max_body_bytes, ..Default::default() };
    for (source, reference) in &settings.secrets {
        if let Some(secret) = crate::config::resolve_secret_text(Some(reference), env)
            .with_context(|| format!("hooks.{source}.secret"))?
        {
            config.secrets.insert(source.to_string(), opsgate_core::Secret::new(secret));
        }
    }
    Ok(config)
}

/// Events deleted per transaction, and the pause between transactions, so retention shares the
/// store with the calls and deliveries instead of holding its write lock.
const RETENTION_BATCH: i64 = 500;
const RETENTION_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Hourly, deletes the events older than `keep`, a small batch at a time. Like the expiry sweep
/// it waits before its first round.
async fn apply_retention(store: Store, keep: chrono::Duration) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let before = opsgate_store::rfc3339(chrono::Utc::now() - keep);
        let mut n_deleted = 0;
        loop {
            match store.delete_events_before(&before, RETENTION_BATCH).await {
                Ok(n) => {
                    n_deleted += n;
                    if (n as i64) < RETENTION_BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not delete old events");
                    break;
                }
            }
            tokio::time::sleep(RETENTION_PAUSE).await;
        }
        if n_deleted > 0 {
            tracing::info!(n_deleted, before = %before, "deleted events past their retention");
        }
        tokio::time::sleep(std::time::Duration::from_secs(59 * 60)).await;
    }
}

/// Every half minute, pending approval requests past their expiry become expired (deciding one
/// checks the expiry anyway, and `approvals list` sweeps first; this keeps `approval_status`
/// truthful in a long-running server). It waits before its first sweep, so a one-shot command
/// such as `opsgate call` never writes for it.
async fn expire_approvals(store: Store) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        let now = opsgate_server::pipeline::now_rfc3339();
        if let Err(error) = store.expire_approvals(&now).await {
            tracing::warn!(%error, "could not expire approval requests");
        }
    }
}

pub async fn open_store(config: &RuntimeConfig) -> anyhow::Result<Store> {
    let location = config.store_location();
    Store::open(&location)
        .await
        .with_context(|| format!("cannot open the store at {}", opsgate_store::redact_url(&location)))
}

/// Builds the registry of built-in tools with the configured backend instances as targets.
/// Secret references are resolved here, once, at start-up.
pub fn registry(config: &RuntimeConfig, env: &impl Env) -> anyhow::Result<Registry> {
    registry_and_health(config, env).map(|(registry, _)| registry)
}

/// `registry`, and the catalog's health source over the same Prometheus clients and signal
/// catalog as its metrics tools (none without a Prometheus).
fn registry_and_health(
    config: &RuntimeConfig,
    env: &impl Env,
) -> anyhow::Result<(Registry, Option<crate::catalog::PrometheusHealth>)> {
    let mut prometheus = Vec::new();
    for (name, instance) in &config.prometheus {
        let token = crate::config::resolve_secret_text(instance.bearer_token.as_deref(), env)
            .with_context(|| format!("connectors.prometheus.{name}.bearer_token"))?;
        prometheus.push(
            PrometheusClient::new(name, instance, token).with_context(|| format!("connectors.prometheus.{name}"))?,
        );
    }
    let mut alertmanager = Vec::new();
    for (name, instance) in &config.alertmanager {
        let token = crate::config::resolve_secret_text(instance.bearer_token.as_deref(), env)
            .with_context(|| format!("connectors.alertmanager.{name}.bearer_token"))?;
        alertmanager.push(
            AlertmanagerClient::new(name, instance, token)
                .with_context(|| format!("connectors.alertmanager.{name}"))?,
        );
    }
    let prometheus = Arc::new(PrometheusClients::new(prometheus));
    let alertmanager = Arc::new(AlertmanagerClients::new(alertmanager));
    check_prometheus_links(&alertmanager, &prometheus).context("connectors.alertmanager")?;

    let mut targets = TargetCatalog::default();
    let protected = |environment: &str| config.is_protected(environment);
    for target in prometheus.targets(protected).into_iter().chain(alertmanager.targets(protected)) {
        targets.add(target);
    }
    let mut registry = Registry::new(targets);
    let mut tools = Vec::new();
    let mut health = None;
    if !prometheus.is_empty() {
        let catalog = SignalCatalog::from_config(&config.metrics).context("metrics.signals")?;
        tools.extend(prometheus_tools(prometheus.clone(), catalog.clone()));
        health = Some(crate::catalog::PrometheusHealth::new(prometheus.clone(), catalog));
    }
    if !alertmanager.is_empty() {
        tools.extend(alertmanager_tools(alertmanager, prometheus));
    }
    for tool in tools {
        registry.register(tool)?;
    }
    Ok((registry, health))
}

impl App {
    pub async fn build(config: &RuntimeConfig, env: &impl Env) -> anyhow::Result<App> {
        let (mut registry, health) = registry_and_health(config, env)?;
        let policy = Arc::new(PolicyHandle::shared(policy_files::load(config)?));
        let store = open_store(config).await?;
        let notices = Notices::new(store.clone());
        registry.register(Arc::new(ApprovalStatusTool::new(store.clone()).with_notices(notices.clone())))?;
        registry.register(Arc::new(opsgate_server::context_tools::TimelineTool::new(store.clone())))?;
        let loaded = match &config.catalog {
            Some(settings) => Some(crate::catalog::load(settings).await),
            None => None,
        };
        let services = loaded.as_ref().map(|loaded| loaded.handle.clone());
        registry
            .register(Arc::new(opsgate_server::context_tools::WhatChangedTool::new(store.clone(), services.clone())))?;
        if let (Some(settings), Some(handle)) = (&config.catalog, &services) {
            let health = health.map(|health| Arc::new(health) as Arc<dyn opsgate_server::catalog::HealthSource>);
            registry.register(Arc::new(opsgate_server::catalog::GetServiceDependencies::new(
                handle.clone(),
                health,
                settings.health,
            )))?;
        }
        for tool in opsgate_server::memory_tools::memory_tools(store.clone()) {
            registry.register(tool)?;
        }
        registry.register(Arc::new(opsgate_server::search_tool::SearchContextTool::new(store.clone())))?;
        let events = opsgate_server::events::EventSink::new(store.clone(), config.hooks.mapping.clone())
            .with_notices(notices.clone());
        let hooks = hooks_config(&config.hooks, env)?;
        let webhook = crate::config::resolve_secret_text(config.approval_webhook.as_deref(), env)
            .context("approvals.webhook_url")?;
        let approvals = ApprovalQueue::new(store.clone(), ApprovalSettings { expiry: config.approval_expiry, webhook })
            .with_notices(notices.clone());
        let (audit, audit_writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
        let catalog = opsgate_gateway::Catalog::new(registry.changes().clone());
        let pipeline = Pipeline::new(
            Arc::new(registry),
            audit,
            PipelineConfig {
                budget: OutputBudget { max_bytes: config.output_budget_tokens * 4 },
                call_timeout: config.call_timeout,
                read_only: config.read_only,
                blast_radius: config.blast_radius.clone(),
                rate_limits: config.rate_limits,
            },
            Arc::new(Metrics::default()),
        )
        .with_policy(policy.clone())
        .with_approvals(approvals)
        .with_events(events.clone());
        // The catalog's resources are served without a catalog too: a service's page then shows
        // its recent events, and clients can subscribe to it.
        let own = opsgate_server::catalog::CatalogSurface::new(
            services.unwrap_or_default(),
            store.clone(),
            pipeline.redactor().clone(),
        );
        let surface =
            opsgate_gateway::FederatedSurface::new(Arc::new(own), catalog.clone(), pipeline.redactor().clone());
        let mcp = Arc::new(McpState {
            pipeline: Arc::new(pipeline),
            surface: Arc::new(surface),
            server_name: "opsgate".to_string(),
            instructions: Some(INSTRUCTIONS.to_string()),
        });
        let policy_watch = policy_files::watch(policy, config);
        let expiry_sweep = tokio::spawn(expire_approvals(store.clone()));
        Ok(App {
            store,
            mcp,
            audit_writer,
            policy_watch,
            services: loaded,
            expiry_sweep,
            gateway: None,
            catalog,
            federation_problems: Vec::new(),
            events,
            hooks,
            notices,
            background: Vec::new(),
        })
    }

    /// Starts what only the commands that keep running need, once the catalog's runbooks are
    /// indexed for search: passing the services new events touch (here or in another process on
    /// the store) on to subscribed clients, deleting events past their retention, and reloading
    /// the catalog (and indexing its runbooks again) when its files change.
    pub async fn run_in_background(&mut self, config: &RuntimeConfig) {
        if let Some(services) = &self.services {
            services.index_runbooks(&self.store).await;
        }
        let changes = self.mcp.pipeline.registry().changes().clone();
        self.background.push(tokio::spawn(opsgate_server::events::announce_service_updates(
            self.notices.clone(),
            changes.clone(),
        )));
        if let Some(keep) = config.event_retention {
            self.background.push(tokio::spawn(apply_retention(self.store.clone(), keep)));
        }
        if let Some(services) = &self.services {
            self.background.push(services.watch(changes, &self.store));
        }
    }

    /// Starts a supervisor for each federated server in the project's `.opsgate/mcp.json` and
    /// the global `mcp.json` (once), or only for the server `only` (a one-shot command about one
    /// server starts no other); their tools join the registry as they connect. Entries that
    /// cannot be used are logged with file, server and reason, and the rest start.
    pub fn start_gateway(&mut self, env: &impl Env, only: Option<&str>) -> anyhow::Result<&opsgate_gateway::Gateway> {
        if self.gateway.is_none() {
            let mut loaded = load_federation(env)?;
            for problem in &loaded.problems {
                tracing::warn!(%problem, "federated MCP server configuration");
            }
            self.federation_problems = loaded.problems;
            if let Some(only) = only {
                loaded.servers.retain(|server| server.name == only);
            }
            self.gateway = Some(opsgate_gateway::Gateway::start(
                self.mcp.pipeline.registry(),
                &self.store,
                &self.catalog,
                loaded.servers,
            ));
        }
        Ok(self.gateway.as_ref().expect("started above"))
    }

    /// For a one-shot command about `tool`: when it is federated, starts its server and waits
    /// until it has connected or failed once, so that the tool exists if its server is up; when
    /// it is `search_context`, indexes the catalog's runbooks first.
    pub async fn reach_tool(&mut self, tool: &str, env: &impl Env) -> anyhow::Result<()> {
        if let Some((server, _)) = opsgate_core::split_federated_name(tool) {
            self.start_gateway(env, Some(server))?.settle().await;
        }
        if tool == opsgate_server::search_tool::SearchContextTool::NAME
            && let Some(services) = &self.services
        {
            services.index_runbooks(&self.store).await;
        }
        Ok(())
    }

    /// Drops this app's handles and waits for the audit writer to commit what is queued.
    pub async fn finish(self) {
        let App { store, mcp, audit_writer, policy_watch, expiry_sweep, gateway, background, .. } = self;
        for task in background {
            task.abort();
        }
        if let Some(gateway) = gateway {
            gateway.shutdown().await;
        }
        expiry_sweep.abort();
        if let Some(watch) = policy_watch {
            watch.abort();
        }
        drop(mcp);
        if tokio::time::timeout(std::time::Duration::from_secs(10), audit_writer).await.is_err() {
            tracing::warn!("audit writer did not finish within 10s of shutdown");
        }
        store.close().await;
    }
}

/// The federated servers of the project's `.opsgate/mcp.json` over the global `mcp.json`, with
/// what could not be used.
pub fn load_federation(env: &impl Env) -> anyhow::Result<opsgate_gateway::Loaded> {
    let project_dir = std::env::current_dir().context("cannot read the current directory")?;
    let (project, global) = opsgate_gateway::config::default_paths(&project_dir);
    Ok(opsgate_gateway::config::load(&project, global.as_deref(), &|name| env.var(name)))
}

/// Sent to clients at initialize: how to use the tools well, in few words.
const INSTRUCTIONS: &str = "opsgate gives governed access to operations data. Pick a backend with the \
`target` argument (default: the first configured). Results are compact tables; when one says \
truncated, call again with its cursor.";
