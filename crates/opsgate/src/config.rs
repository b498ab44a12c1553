//! Configuration: `opsgate.toml` (found in `./`, then `$XDG_CONFIG_HOME/opsgate/`, or given with
//! `--config`), overridden by `OPSGATE_*` variables, resolved into a validated `RuntimeConfig`.
//! Unknown keys are errors that name the key and the file; secrets are references (`env:VAR`,
//! `file:/path`), never inline values.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use opsgate_connectors::alertmanager::AlertmanagerConfig;
use opsgate_connectors::prometheus::{MetricsCatalogConfig, PrometheusConfig};
use opsgate_server::identity::{IdentityConfig, OauthConfig, parse_algorithm};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";
pub const CONFIG_FILE: &str = "opsgate.toml";

/// Where configuration values come from besides the file: the process environment, or a map in
/// tests, so parsing is tested without touching global state.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config {path}: {key}: {reason}")]
    Invalid { path: String, key: String, reason: String },
}

/// The file as written. Every table denies unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub identity: IdentitySection,
    #[serde(default)]
    pub connectors: ConnectorsSection,
    /// The signal catalog of `get_service_metrics`: `[metrics.signals.NAME]`.
    #[serde(default)]
    pub metrics: MetricsCatalogConfig,
    #[serde(default)]
    pub environments: Vec<EnvironmentSection>,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub rate_limits: RateLimitsSection,
    #[serde(default)]
    pub approvals: ApprovalsSection,
    #[serde(default)]
    pub hooks: HooksSection,
    #[serde(default)]
    pub events: EventsSection,
    /// The service catalog: Backstage catalog files and runbooks.
    pub catalog: Option<CatalogSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite store.
    pub store: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub max_body_bytes: Option<usize>,
    pub call_timeout_seconds: Option<f64>,
    pub output_budget_tokens: Option<usize>,
    pub read_only: Option<bool>,
    /// The URL clients reach opsgate at (`https://opsgate.example.com`): the OAuth audience and
    /// the base of the protected-resource metadata URL.
    pub public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Roles of the local OS user in stdio mode and for `opsgate call`.
    pub local_roles: Option<Vec<String>>,
    /// Serve HTTP requests without credentials as the anonymous principal. Unset: only while
    /// OAuth is not configured and no API key was ever created.
    pub allow_anonymous: Option<bool>,
    pub oauth: Option<OauthSection>,
}

/// `[identity.oauth]`: opsgate as an OAuth 2.1 resource server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthSection {
    pub issuer: String,
    pub jwks_url: String,
    /// Default: `[server] public_url`.
    pub audience: Option<OneOrMany>,
    /// Default: RS256 and ES256.
    pub algorithms: Option<Vec<String>>,
    /// Default: `scope`.
    pub scopes_claim: Option<String>,
    /// Scope → roles it grants: `"opsgate:write" = ["operator"]`.
    #[serde(default)]
    pub roles: IndexMap<String, Vec<String>>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Default: 60.
    pub leeway_seconds: Option<u64>,
    /// Default: the issuer.
    pub authorization_servers: Option<Vec<String>>,
}

/// A value written as one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsSection {
    #[serde(default)]
    pub prometheus: IndexMap<String, PrometheusConfig>,
    #[serde(default)]
    pub alertmanager: IndexMap<String, AlertmanagerConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSection {
    pub name: String,
    #[serde(default)]
    pub protected: bool,
    /// The most things one write may touch in this environment.
    pub max_blast_radius: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Rego files, or directories whose `*.rego` files are read; relative to the config file.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Leave the built-in bundle out; the files must then define `data.opsgate.decision`.
    #[serde(default)]
    pub replace_default: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// The most things one call of a tool may touch, by tool name.
    #[serde(default)]
    pub max_blast_radius: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSection {
    pub read: Option<RateSection>,
    pub write: Option<RateSection>,
}

/// `per_minute = 0` turns the limit off.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    pub per_minute: f64,
    pub burst: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// How long a request waits for its approvals before it expires.
    pub expiry_minutes: Option<u64>,
    /// A Slack-compatible incoming webhook that hears of each new request (a secret reference).
    pub webhook_url: Option<String>,
}

/// The operational events opsgate keeps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// Events older than this many days are deleted in the background (default 90; 0 keeps
    /// them forever).
    pub retention_days: Option<u32>,
}

/// `[catalog]`: where the service catalog and its runbooks are, and how health is judged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// Backstage catalog files, or directories scanned recursively for `*.yaml`/`*.yml`;
    /// relative to the config file.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Directories of Markdown runbooks; relative to the config file.
    #[serde(default)]
    pub runbooks: Vec<PathBuf>,
    /// Above this error rate (0..1) a service is degraded (default 0.05).
    pub degraded_error_rate: Option<f64>,
    /// Above this p99 latency a service is degraded (default: latency alone never degrades).
    pub degraded_latency_p99_seconds: Option<f64>,
    /// Each service's health query is given up after this long (default 3).
    pub health_timeout_seconds: Option<f64>,
}

/// What `[catalog]` resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogSettings {
    pub sources: opsgate_server::catalog::CatalogSources,
    pub health: opsgate_server::catalog::HealthSettings,
}

impl CatalogSection {
    /// Paths resolved against `base` (the config file's directory), values checked; an error
    /// names the key.
    fn resolve(self, base: &Path) -> Result<CatalogSettings, (String, String)> {
        let key = |name: &str| format!("catalog.{name}");
        if self.paths.is_empty() && self.runbooks.is_empty() {
            return Err((key("paths"), "name at least one catalog file or directory (or runbooks)".to_string()));
        }
        let mut health = opsgate_server::catalog::HealthSettings::default();
        if let Some(rate) = self.degraded_error_rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= 1.0) {
                return Err((key("degraded_error_rate"), "must be a share between 0 and 1, such as 0.05".to_string()));
            }
            health.degraded_error_rate = rate;
        }
        if let Some(latency) = self.degraded_latency_p99_seconds {
            if !(latency.is_finite() && latency > 0.0 && latency <= 3600.0) {
                return Err((key("degraded_latency_p99_seconds"), "must be between 0 and 3600".to_string()));
            }
            health.degraded_latency_p99 = Some(latency);
        }
        if let Some(timeout) = self.health_timeout_seconds {
            if !(timeout.is_finite() && timeout > 0.0 && timeout <= 60.0) {
                return Err((key("health_timeout_seconds"), "must be between 0 and 60".to_string()));
            }
            health.timeout = std::time::Duration::from_secs_f64(timeout);
        }
        let sources = opsgate_server::catalog::CatalogSources {
            paths: self.paths.iter().map(|path| base.join(path)).collect(),
            runbooks: self.runbooks.iter().map(|path| base.join(path)).collect(),
        };
        Ok(CatalogSettings { sources, health })
    }
}

/// `/hooks/<source>`: a source is on when its secret is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// The largest delivery accepted, in bytes (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    pub alertmanager: Option<HookSection>,
    pub github: Option<HookSection>,
    pub gitlab: Option<HookSection>,
    pub argocd: Option<HookSection>,
    pub flux: Option<HookSection>,
    pub cloudevents: Option<HookSection>,
    /// Service and environment mapping, tried in order: `[[hooks.mapping]]`.
    #[serde(default)]
    pub mapping: Vec<MappingSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// A secret reference: the bearer token Alertmanager, Argo CD or a CloudEvents sender
    /// sends; GitLab's `X-Gitlab-Token`; the HMAC key of GitHub's or Flux's signature.
    pub secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSection {
    pub source: Option<String>,
    pub attribute: String,
    pub pattern: String,
    pub service: Option<String>,
    pub environment: Option<String>,
}

/// What `[hooks]` resolves to; the secrets stay references until `App::build` reads them.
#[derive(Debug, Clone, Default)]
pub struct HooksSettings {
    pub max_body_bytes: usize,
    /// Source name → secret reference.
    pub secrets: Vec<(&'static str, String)>,
    pub mapping: Vec<opsgate_server::events::MappingRule>,
}

impl HooksSection {
    fn resolve(self) -> Result<HooksSettings, (String, String)> {
        let max_body_bytes = self.max_body_bytes.unwrap_or(1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(("hooks.max_body_bytes".to_string(), "must be between 1024 and 67108864".to_string()));
        }
        let mut secrets = Vec::new();
        let sources = [
            ("alertmanager", self.alertmanager),
            ("github", self.github),
            ("gitlab", self.gitlab),
            ("argocd", self.argocd),
            ("flux", self.flux),
            ("cloudevents", self.cloudevents),
        ];
        for (name, section) in sources {
            if let Some(section) = section {
                check_secret_reference(Some(&section.secret))
                    .map_err(|reason| (format!("hooks.{name}.secret"), reason))?;
                secrets.push((name, section.secret));
            }
        }
        let mut mapping = Vec::new();
        for (index, rule) in self.mapping.into_iter().enumerate() {
            let rule = opsgate_server::events::MappingRule::new(
                rule.source,
                rule.attribute,
                &rule.pattern,
                rule.service,
                rule.environment,
            )
            .map_err(|reason| (format!("hooks.mapping[{index}]"), reason))?;
            mapping.push(rule);
        }
        Ok(HooksSettings { max_body_bytes, secrets, mapping })
    }
}

/// Settings given on the command line; they win over the environment and the file.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub read_only: bool,
}

/// The validated configuration opsgate runs with.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The file that was read, if any.
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// PostgreSQL URL; `None` means SQLite in `data_dir`.
    pub store: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub max_body_bytes: usize,
    pub call_timeout: std::time::Duration,
    pub output_budget_tokens: usize,
    pub read_only: bool,
    /// `[server] public_url` without a trailing slash; `None`: `http://` and the listen address.
    pub public_url: Option<String>,
    pub local_roles: Vec<String>,
    /// HTTP identity: the anonymous rule, OAuth.
    pub identity: IdentityConfig,
    pub prometheus: IndexMap<String, PrometheusConfig>,
    pub alertmanager: IndexMap<String, AlertmanagerConfig>,
    pub metrics: MetricsCatalogConfig,
    pub environments: Vec<EnvironmentSection>,
    /// Policy files in load order, resolved against the config file's directory.
    pub policy_files: Vec<PathBuf>,
    pub replace_default_policy: bool,
    pub blast_radius: opsgate_server::BlastRadiusLimits,
    pub rate_limits: opsgate_server::RateLimits,
    pub approval_expiry: std::time::Duration,
    /// A secret reference (`env:`/`file:`), resolved when a request is posted.
    pub approval_webhook: Option<String>,
    pub hooks: HooksSettings,
    /// How long events are kept; `None` keeps them forever.
    pub event_retention: Option<chrono::Duration>,
    /// The service catalog, when `[catalog]` is there.
    pub catalog: Option<CatalogSettings>,
}

impl RuntimeConfig {
    /// The store location `Store::open` takes: the PostgreSQL URL or the data directory.
    pub fn store_location(&self) -> String {
        self.store.clone().unwrap_or_else(|| self.data_dir.display().to_string())
    }

    pub fn is_protected(&self, environment: &str) -> bool {
        self.environments.iter().any(|section| section.name == environment && section.protected)
    }
}

/// Finds the config file: `--config`, else `./opsgate.toml`, else
/// `$XDG_CONFIG_HOME/opsgate/opsgate.toml` (`~/.config` when unset). No file is fine: the
/// defaults serve.
pub fn find_config_file(overrides: &CliOverrides, env: &impl Env) -> Option<PathBuf> {
    if let Some(path) = &overrides.config {
        return Some(path.clone());
    }
    if let Some(path) = env.var("OPSGATE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from(CONFIG_FILE);
    if local.is_file() {
        return Some(local);
    }
    let config_home = env
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    let global = config_home.join("opsgate").join(CONFIG_FILE);
    global.is_file().then_some(global)
}

pub fn default_data_dir(env: &impl Env) -> PathBuf {
    env.var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|home| PathBuf::from(home).join(".local").join("share")))
        .map(|base| base.join("opsgate"))
        .unwrap_or_else(|| PathBuf::from(".opsgate-data"))
}

/// Reads the file (if any) and resolves it with the environment and the command line.
pub fn load(overrides: &CliOverrides, env: &impl Env) -> Result<RuntimeConfig, ConfigError> {
    let source = find_config_file(overrides, env);
    let file = match &source {
        None => FileConfig::default(),
        Some(path) => {
            let text = env.read_file(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            parse(&text, &path.display().to_string())?
        }
    };
    file.resolve(source, overrides, env)
}

/// Parses the text of a config file; `name` is how errors refer to it.
pub fn parse(text: &str, name: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|error| ConfigError::Parse { path: name.to_string(), message: error.to_string() })
}

impl FileConfig {
    /// Low-level input becomes the validated form: environment and command line applied, values
    /// checked, names validated.
    pub fn resolve(
        self,
        source: Option<PathBuf>,
        overrides: &CliOverrides,
        env: &impl Env,
    ) -> Result<RuntimeConfig, ConfigError> {
        let file_name =
            source.as_ref().map(|path| path.display().to_string()).unwrap_or_else(|| "(defaults)".to_string());
        let invalid =
            |key: &str, reason: String| ConfigError::Invalid { path: file_name.clone(), key: key.to_string(), reason };
        let env_name = |key: &str| format!("environment variable {key}");
        let server = self.server;

        let (listen_key, listen) = match (&overrides.listen, env.var("OPSGATE_LISTEN"), server.listen) {
            (Some(listen), _, _) => ("--listen".to_string(), listen.clone()),
            (None, Some(listen), _) => (env_name("OPSGATE_LISTEN"), listen),
            (None, None, Some(listen)) => ("server.listen".to_string(), listen),
            (None, None, None) => ("server.listen".to_string(), DEFAULT_LISTEN.to_string()),
        };
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| invalid(&listen_key, format!("{listen:?} is not an address like 127.0.0.1:7420")))?;

        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env.var("OPSGATE_DATA_DIR").map(PathBuf::from))
            .or(server.data_dir)
            .unwrap_or_else(|| default_data_dir(env));
        let store = overrides.store.clone().or_else(|| env.var("OPSGATE_STORE")).or(server.store);
        if let Some(store) = &store
            && !(store.starts_with("postgres://") || store.starts_with("postgresql://"))
        {
            return Err(invalid(
                "server.store",
                "must be a postgres:// URL (SQLite lives in the data directory)".to_string(),
            ));
        }

        let read_only = overrides.read_only
            || match env.var("OPSGATE_READ_ONLY") {
                Some(value) => parse_bool(&value).ok_or_else(|| {
                    invalid(&env_name("OPSGATE_READ_ONLY"), format!("{value:?} is not true or false"))
                })?,
                None => server.read_only.unwrap_or(false),
            };

        let call_timeout_seconds = match env.var("OPSGATE_CALL_TIMEOUT_SECONDS") {
            Some(value) => value.parse::<f64>().map_err(|_| {
                invalid(&env_name("OPSGATE_CALL_TIMEOUT_SECONDS"), format!("{value:?} is not a number of seconds"))
            })?,
            None => server.call_timeout_seconds.unwrap_or(30.0),
        };
        if !(call_timeout_seconds.is_finite() && call_timeout_seconds > 0.0 && call_timeout_seconds <= 3600.0) {
            return Err(invalid("server.call_timeout_seconds", "must be between 0 and 3600".to_string()));
        }
        let output_budget_tokens = match env.var("OPSGATE_OUTPUT_BUDGET_TOKENS") {
            Some(value) => value.parse::<usize>().map_err(|_| {
                invalid(&env_name("OPSGATE_OUTPUT_BUDGET_TOKENS"), format!("{value:?} is not a whole number"))
            })?,
            None => server.output_budget_tokens.unwrap_or(4_000),
        };
        if !(200..=100_000).contains(&output_budget_tokens) {
            return Err(invalid("server.output_budget_tokens", "must be between 200 and 100000".to_string()));
        }
        let max_body_bytes = server.max_body_bytes.unwrap_or(4 * 1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".to_string()));
        }

        for (kind, names) in [
            ("prometheus", self.connectors.prometheus.keys().collect::<Vec<_>>()),
            ("alertmanager", self.connectors.alertmanager.keys().collect::<Vec<_>>()),
        ] {
            for name in names {
                if !is_valid_instance_name(name) {
                    return Err(invalid(
                        &format!("connectors.{kind}.{name}"),
                        "instance names use a-z, 0-9 and -, starting with a letter".to_string(),
                    ));
                }
            }
        }
        for (name, instance) in &self.connectors.prometheus {
            check_url(&instance.url).map_err(|reason| invalid(&format!("connectors.prometheus.{name}.url"), reason))?;
            check_secret_reference(instance.bearer_token.as_deref())
                .map_err(|reason| invalid(&format!("connectors.prometheus.{name}.bearer_token"), reason))?;
        }
        for (name, instance) in &self.connectors.alertmanager {
            check_url(&instance.url)
                .map_err(|reason| invalid(&format!("connectors.alertmanager.{name}.url"), reason))?;
            check_secret_reference(instance.bearer_token.as_deref())
                .map_err(|reason| invalid(&format!("connectors.alertmanager.{name}.bearer_token"), reason))?;
            if let Some(prometheus) = &instance.prometheus
                && !self.connectors.prometheus.contains_key(prometheus)
            {
                return Err(invalid(
                    &format!("connectors.alertmanager.{name}.prometheus"),
                    format!("no prometheus instance named {prometheus:?}"),
                ));
            }
        }

        let base = source.as_ref().and_then(|path| path.parent()).map(Path::to_path_buf).unwrap_or_default();
        let policy_files = self.policy.files.iter().map(|path| base.join(path)).collect();
        if self.policy.replace_default && self.policy.files.is_empty() {
            return Err(invalid("policy.replace_default", "needs policy.files that define the decision".to_string()));
        }
        let mut blast_radius = opsgate_server::BlastRadiusLimits::default();
        for environment in &self.environments {
            if let Some(limit) = environment.max_blast_radius {
                blast_radius.environments.insert(environment.name.clone(), limit);
            }
        }
        blast_radius.tools = self.limits.max_blast_radius;
        let mut rate_limits = opsgate_server::RateLimits::default();
        for (key, section, slot) in [
            ("rate_limits.read", self.rate_limits.read, &mut rate_limits.read),
            ("rate_limits.write", self.rate_limits.write, &mut rate_limits.write),
        ] {
            let Some(section) = section else { continue };
            if !(section.per_minute.is_finite() && section.per_minute >= 0.0) {
                return Err(invalid(&format!("{key}.per_minute"), "must be 0 (no limit) or more".to_string()));
            }
            let burst = section.burst.unwrap_or((section.per_minute / 3.0).max(1.0));
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(invalid(&format!("{key}.burst"), "must be at least 1".to_string()));
            }
            *slot =
                (section.per_minute > 0.0).then_some(opsgate_server::Rate { per_minute: section.per_minute, burst });
        }
        let expiry_minutes = self.approvals.expiry_minutes.unwrap_or(30);
        if !(1..=7 * 24 * 60).contains(&expiry_minutes) {
            return Err(invalid("approvals.expiry_minutes", "must be between 1 and 10080 (a week)".to_string()));
        }
        check_secret_reference(self.approvals.webhook_url.as_deref())
            .map_err(|reason| invalid("approvals.webhook_url", reason))?;
        let hooks = self.hooks.resolve().map_err(|(key, reason)| invalid(&key, reason))?;
        let retention_days = self.events.retention_days.unwrap_or(90);
        if retention_days > 36_500 {
            return Err(invalid(
                "events.retention_days",
                "must be at most 36500 (a hundred years); 0 keeps events forever".to_string(),
            ));
        }
        let event_retention = (retention_days > 0).then(|| chrono::Duration::days(i64::from(retention_days)));
        let catalog = self
            .catalog
            .map(|section| section.resolve(&base))
            .transpose()
            .map_err(|(key, reason)| invalid(&key, reason))?;
        let public_url = match env.var("OPSGATE_PUBLIC_URL").or(server.public_url) {
            None => None,
            Some(url) => Some(
                check_url(&url)
                    .map(|()| url.trim_end_matches('/').to_string())
                    .map_err(|reason| invalid("server.public_url", reason))?,
            ),
        };
        let identity = IdentityConfig {
            allow_anonymous: self.identity.allow_anonymous,
            oauth: match self.identity.oauth {
                None => None,
                Some(section) => {
                    Some(resolve_oauth(section, public_url.as_deref()).map_err(|(key, reason)| invalid(&key, reason))?)
                }
            },
            ..IdentityConfig::default()
        };

        Ok(RuntimeConfig {
            policy_files,
            replace_default_policy: self.policy.replace_default,
            blast_radius,
            rate_limits,
            approval_expiry: std::time::Duration::from_secs(expiry_minutes * 60),
            approval_webhook: self.approvals.webhook_url,
            hooks,
            event_retention,
            catalog,
            source,
            listen,
            data_dir,
            store,
            allowed_hosts: server.allowed_hosts,
            allowed_origins: server.allowed_origins,
            max_body_bytes,
            call_timeout: std::time::Duration::from_secs_f64(call_timeout_seconds),
            output_budget_tokens,
            read_only,
            public_url,
            local_roles: self.identity.local_roles.unwrap_or_else(|| vec!["operator".to_string()]),
            identity,
            prometheus: self.connectors.prometheus,
            alertmanager: self.connectors.alertmanager,
            metrics: self.metrics,
            environments: self.environments,
        })
    }
}

/// `[identity.oauth]` checked and completed with its defaults; an error names the key.
fn resolve_oauth(section: OauthSection, public_url: Option<&str>) -> Result<OauthConfig, (String, String)> {
    let key = |name: &str| format!("identity.oauth.{name}");
    if section.issuer.trim().is_empty() {
        return Err((key("issuer"), "must name the token issuer (the iss claim)".to_string()));
    }
    check_url(&section.jwks_url).map_err(|reason| (key("jwks_url"), reason))?;
    if section.jwks_url.starts_with("http://") && !is_loopback_url(&section.jwks_url) {
        return Err((
            key("jwks_url"),
            "must be https:// (plain http is accepted only for loopback addresses): the keys it serves decide who              gets in"
                .to_string(),
        ));
    }
    let Some(public_url) = public_url else {
        return Err((
            "server.public_url".to_string(),
            "is required with [identity.oauth]: the URL clients reach opsgate at, which tokens must name as their              audience"
                .to_string(),
        ));
    };
    let audiences = section.audience.map(OneOrMany::into_vec).unwrap_or_else(|| vec![public_url.to_string()]);
    if audiences.is_empty() || audiences.iter().any(|audience| audience.trim().is_empty()) {
        return Err((key("audience"), "must name at least one audience, none of them empty".to_string()));
    }
    let mut oauth = OauthConfig::new(section.issuer, section.jwks_url, public_url);
    oauth.audiences = audiences;
    if let Some(names) = section.algorithms {
        if names.is_empty() {
            return Err((key("algorithms"), "must name at least one algorithm".to_string()));
        }
        oauth.algorithms = names
            .iter()
            .map(|name| parse_algorithm(name))
            .collect::<Result<_, _>>()
            .map_err(|reason| (key("algorithms"), reason))?;
    }
    if let Some(claim) = section.scopes_claim {
        if claim.trim().is_empty() {
            return Err((key("scopes_claim"), "must name a claim, such as scope or scp".to_string()));
        }
        oauth.scopes_claim = claim;
    }
    for (scope, roles) in &section.roles {
        if scope.trim().is_empty() || roles.iter().any(|role| role.trim().is_empty()) {
            return Err((key("roles"), format!("scope {scope:?}: scopes and roles must not be empty")));
        }
    }
    oauth.roles = section.roles.into_iter().collect();
    oauth.required_scopes = section.required_scopes;
    if let Some(leeway) = section.leeway_seconds {
        if leeway > 600 {
            return Err((key("leeway_seconds"), "must be at most 600".to_string()));
        }
        oauth.leeway = std::time::Duration::from_secs(leeway);
    }
    if let Some(servers) = section.authorization_servers {
        oauth.authorization_servers = servers;
    }
    Ok(oauth)
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Instance names appear in tool schemas and audit records: keep them plain.
pub fn is_valid_instance_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && name.len() <= 63
}

/// Secrets in the file must be references; the error never repeats the value.
fn check_secret_reference(reference: Option<&str>) -> Result<(), String> {
    match reference {
        None => Ok(()),
        Some(text) => text.parse::<opsgate_core::SecretRef>().map(|_| ()),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{url:?} is not an http:// or https:// URL"))
    }
}

#[cfg(test)]
mod tests;

/// Reads a secret reference through `env`. A missing variable or unreadable file is an error that
/// names the reference, never the value.
pub fn resolve_secret(
    reference: Option<&opsgate_core::SecretRef>,
    env: &impl Env,
) -> anyhow::Result<Option<opsgate_core::Secret>> {
    use opsgate_core::SecretRef;
    let Some(reference) = reference else { return Ok(None) };
    let value = match reference {
        SecretRef::Env(name) => {
            env.var(name).ok_or_else(|| anyhow::anyhow!("environment variable {name} is not set"))?
        }
        SecretRef::File(path) => env
            .read_file(Path::new(path))
            .map_err(|error| anyhow::anyhow!("cannot read secret file {path}: {error}"))?
            .trim_end()
            .to_string(),
    };
    if value.is_empty() {
        anyhow::bail!("secret {reference:?} is empty");
    }
    Ok(Some(opsgate_core::Secret::new(value)))
}

/// Resolves a reference string from a connector's config (already checked at load time) into the
/// value its client sends.
pub fn resolve_secret_text(reference: Option<&str>, env: &impl Env) -> anyhow::Result<Option<String>> {
    let Some(text) = reference else { return Ok(None) };
    let reference: opsgate_core::SecretRef = text.parse().map_err(|reason: String| anyhow::anyhow!(reason))?;
    Ok(resolve_secret(Some(&reference), env)?.map(|secret| secret.expose().to_string()))
}
