//! A real Prometheus server with a generated configuration: static scrape targets, optional
//! alert rules and an optional Alertmanager.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::free_port;
use crate::process::{
    Backend, PORT_ATTEMPTS, Startup, config_duration, find_binary, http_client, http_ok, yaml_string,
};

/// What the Prometheus under test scrapes and evaluates.
#[derive(Clone, Debug)]
pub struct PrometheusOptions {
    /// One scrape job per entry.
    pub scrape_targets: Vec<ScrapeTarget>,
    /// Defaults to 1 s so that tests see their first samples quickly.
    pub scrape_interval: Duration,
    /// Defaults to 1 s so that alerts fire quickly.
    pub evaluation_interval: Duration,
    /// The content of one rule file (Prometheus rule YAML, `groups: ...`).
    pub rules: Option<String>,
    /// Where to send alerts, e.g. `Alertmanager::url()`.
    pub alertmanager_url: Option<String>,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        PrometheusOptions {
            scrape_targets: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            evaluation_interval: Duration::from_secs(1),
            rules: None,
            alertmanager_url: None,
        }
    }
}

impl PrometheusOptions {
    /// Adds a scrape job.
    pub fn scrape(mut self, target: ScrapeTarget) -> Self {
        self.scrape_targets.push(target);
        self
    }

    /// Sets the rule file content.
    pub fn rules(mut self, yaml: impl Into<String>) -> Self {
        self.rules = Some(yaml.into());
        self
    }

    /// Sends alerts to the Alertmanager at `url`.
    pub fn alertmanager(mut self, url: impl Into<String>) -> Self {
        self.alertmanager_url = Some(url.into());
        self
    }
}

/// A scrape job: its name, its `host:port` targets and static labels added to every series.
#[derive(Clone, Debug)]
pub struct ScrapeTarget {
    pub job: String,
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl ScrapeTarget {
    /// A job scraping one `host:port`, such as `Exporter::target()`.
    pub fn new(job: impl Into<String>, target: impl Into<String>) -> Self {
        ScrapeTarget { job: job.into(), targets: vec![target.into()], labels: BTreeMap::new() }
    }

    /// Adds another `host:port` to the job.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.targets.push(target.into());
        self
    }

    /// Adds a static label to every series of the job.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }
}

/// A running `prometheus` on `127.0.0.1:<port>` with its TSDB in a temporary directory.
#[derive(Debug)]
pub struct Prometheus {
    // Field order matters: the process stops before its directory is deleted.
    backend: Backend,
    url: String,
    port: u16,
    client: reqwest::Client,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus and waits until `/-/ready` answers.
    pub async fn start(options: PrometheusOptions) -> Result<Prometheus> {
        let binary = find_binary("prometheus")?;
        let client = http_client()?;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let dir = tempfile::Builder::new()
                .prefix("opsgate-prometheus-")
                .tempdir()
                .context("create prometheus temporary directory")?;
            let config = dir.path().join("prometheus.yml");
            let data = dir.path().join("data");
            std::fs::write(&config, render_config(&options, dir.path())?)
                .with_context(|| format!("write {}", config.display()))?;
            if let Some(rules) = &options.rules {
                let path = dir.path().join("rules.yml");
                std::fs::write(&path, rules).with_context(|| format!("write {}", path.display()))?;
            }

            let mut command = Command::new(&binary);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // Lets a test change rules or targets and POST /-/reload instead of restarting.
                .arg("--web.enable-lifecycle")
                .current_dir(dir.path());
            // SIGKILL: the data is thrown away, so a graceful shutdown would only cost time.
            let mut backend = Backend::spawn("prometheus", command, dir.path(), "KILL")?;

            let url = format!("http://127.0.0.1:{port}");
            let data = data.display().to_string();
            let startup = backend.wait_ready(|| is_ours_and_ready(&client, &url, &data)).await?;
            match startup {
                Startup::Ready => {
                    return Ok(Prometheus { backend, url, port, client, _dir: dir });
                }
                Startup::PortTaken => continue,
            }
        }
        bail!("prometheus: every port tried was taken ({PORT_ATTEMPTS} attempts)")
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The port Prometheus listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs an instant query and returns the `data` object of the response
    /// (`{"resultType": ..., "result": ...}`).
    pub async fn query(&self, promql: &str) -> Result<Value> {
        let url = format!("{}/api/v1/query", self.url);
        let response =
            self.client.get(&url).query(&[("query", promql)]).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("decode response of {url}"))?;
        if !status.is_success() || body["status"] != "success" {
            bail!("prometheus query `{promql}` failed with {status}: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Polls `query` until `predicate` accepts its `result` array or `timeout` passes, and
    /// returns that result. For "any series at all" pass `|result| !result.is_empty()`.
    ///
    /// Tests wait with this instead of sleeping. Expect the first samples about 6 s after
    /// start: Prometheus 2.42 (Debian 12) hands new targets to the scraper only on its 5 s
    /// service-discovery tick, even static ones, and has no flag to shorten it.
    pub async fn wait_for_query(
        &self,
        promql: &str,
        predicate: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.query(promql).await {
                Ok(data) => {
                    let result = data["result"].as_array().cloned().unwrap_or_default();
                    if predicate(&result) {
                        return Ok(result);
                    }
                    Value::Array(result).to_string()
                }
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "prometheus query `{promql}` did not match within {timeout:?}; last result: {last}; \
                     last log lines:\n{}",
                    self.backend.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Ready, and really the instance we started: a concurrent test could have taken the port and
/// started its own Prometheus there. Our TSDB path tells the two apart.
async fn is_ours_and_ready(client: &reqwest::Client, url: &str, data: &str) -> bool {
    let flags = async {
        let body: Value = client.get(format!("{url}/api/v1/status/flags")).send().await.ok()?.json().await.ok()?;
        Some(body["data"]["storage.tsdb.path"] == data)
    };
    flags.await == Some(true) && http_ok(client, &format!("{url}/-/ready")).await
}

fn render_config(options: &PrometheusOptions, dir: &Path) -> Result<String> {
    // `write!` into a String cannot fail, hence the ignored results below.
    let mut yaml = String::new();
    let interval = config_duration(options.scrape_interval);
    let _ = writeln!(yaml, "global:");
    let _ = writeln!(yaml, "  scrape_interval: {interval}");
    // Prometheus rejects a scrape timeout longer than the interval, and the default is 10 s.
    let _ = writeln!(yaml, "  scrape_timeout: {interval}");
    let _ = writeln!(yaml, "  evaluation_interval: {}", config_duration(options.evaluation_interval));

    if options.rules.is_some() {
        let rules = dir.join("rules.yml");
        let _ = writeln!(yaml, "rule_files:");
        let _ = writeln!(yaml, "  - {}", yaml_string(&rules.display().to_string()));
    }

    if let Some(url) = &options.alertmanager_url {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("parse alertmanager url {url}"))?;
        let host = parsed.host_str().with_context(|| format!("alertmanager url {url} has no host"))?;
        let port = parsed.port_or_known_default().with_context(|| format!("alertmanager url {url} has no port"))?;
        let _ = writeln!(yaml, "alerting:");
        let _ = writeln!(yaml, "  alertmanagers:");
        let _ = writeln!(yaml, "    - scheme: {}", yaml_string(parsed.scheme()));
        let _ = writeln!(yaml, "      path_prefix: {}", yaml_string(parsed.path()));
        let _ = writeln!(yaml, "      static_configs:");
        let _ = writeln!(yaml, "        - targets: [{}]", yaml_string(&format!("{host}:{port}")));
    }

    let _ = writeln!(yaml, "scrape_configs:");
    for job in &options.scrape_targets {
        let _ = writeln!(yaml, "  - job_name: {}", yaml_string(&job.job));
        let _ = writeln!(yaml, "    static_configs:");
        let targets: Vec<String> = job.targets.iter().map(|t| yaml_string(t)).collect();
        let _ = writeln!(yaml, "      - targets: [{}]", targets.join(", "));
        if !job.labels.is_empty() {
            let _ = writeln!(yaml, "        labels:");
            for (name, value) in &job.labels {
                let _ = writeln!(yaml, "          {}: {}", yaml_string(name), yaml_string(value));
            }
        }
    }
    Ok(yaml)
}
