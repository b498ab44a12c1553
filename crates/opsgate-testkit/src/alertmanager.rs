//! A real Alertmanager with one route to a default receiver, clustering off.

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

/// Debian's name for the binary; upstream calls it `alertmanager`, tried second.
const BINARY_NAMES: [&str; 2] = ["prometheus-alertmanager", "alertmanager"];

/// How the Alertmanager under test routes alerts.
#[derive(Clone, Debug)]
pub struct AlertmanagerOptions {
    /// Where the default receiver posts notifications; without it, alerts are only stored.
    pub webhook_url: Option<String>,
    /// Sent as `Authorization: Bearer …` with each notification.
    pub webhook_bearer: Option<String>,
    /// Defaults to 1 s (upstream: 30 s) so notifications leave quickly.
    pub group_wait: Duration,
    /// Defaults to 1 s (upstream: 5 m).
    pub group_interval: Duration,
    /// Defaults to 1 h: tests want one notification per alert, not a stream.
    pub repeat_interval: Duration,
}

impl Default for AlertmanagerOptions {
    fn default() -> Self {
        AlertmanagerOptions {
            webhook_url: None,
            webhook_bearer: None,
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(1),
            repeat_interval: Duration::from_secs(3600),
        }
    }
}

impl AlertmanagerOptions {
    /// Sends notifications to `url`.
    pub fn webhook(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    /// Sends notifications with this bearer token.
    pub fn webhook_bearer(mut self, token: impl Into<String>) -> Self {
        self.webhook_bearer = Some(token.into());
        self
    }
}

/// A running Alertmanager on `127.0.0.1:<port>` with its storage in a temporary directory.
#[derive(Debug)]
pub struct Alertmanager {
    // Field order matters: the process stops before its directory is deleted.
    backend: Backend,
    url: String,
    port: u16,
    client: reqwest::Client,
    _dir: TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager and waits until `/-/ready` answers.
    pub async fn start(options: AlertmanagerOptions) -> Result<Alertmanager> {
        let binary = find_binary(BINARY_NAMES[0]).or_else(|error| find_binary(BINARY_NAMES[1]).map_err(|_| error))?;
        let client = http_client()?;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let dir = tempfile::Builder::new()
                .prefix("opsgate-alertmanager-")
                .tempdir()
                .context("create alertmanager temporary directory")?;
            let config = dir.path().join("alertmanager.yml");
            let marker = marker_template(dir.path());
            std::fs::write(&config, render_config(&options, &marker))
                .with_context(|| format!("write {}", config.display()))?;

            let mut command = Command::new(&binary);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // Empty disables the cluster: otherwise every instance gossips on 0.0.0.0:9094,
                // so a second one fails to bind and they would try to form a cluster.
                .arg("--cluster.listen-address=")
                .current_dir(dir.path());
            // SIGKILL: notification state is thrown away anyway.
            let mut backend = Backend::spawn("alertmanager", command, dir.path(), "KILL")?;

            let url = format!("http://127.0.0.1:{port}");
            let startup = backend.wait_ready(|| is_ours_and_ready(&client, &url, &marker)).await?;
            match startup {
                Startup::Ready => {
                    return Ok(Alertmanager { backend, url, port, client, _dir: dir });
                }
                Startup::PortTaken => continue,
            }
        }
        bail!("alertmanager: every port tried was taken ({PORT_ATTEMPTS} attempts)")
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The port Alertmanager listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`), active and otherwise.
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        self.get_alerts(None).await
    }

    /// Polls `/api/v2/alerts` until at least one alert named `alertname` is present or
    /// `timeout` passes, and returns the alerts with that name.
    pub async fn wait_for_alerts(&self, alertname: &str, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.get_alerts(Some(alertname)).await {
                Ok(alerts) if !alerts.is_empty() => return Ok(alerts),
                Ok(_) => "no alerts".to_owned(),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "alertmanager has no alert {alertname} after {timeout:?} ({last}); \
                     last log lines:\n{}",
                    self.backend.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn get_alerts(&self, alertname: Option<&str>) -> Result<Vec<Value>> {
        let url = format!("{}/api/v2/alerts", self.url);
        let mut request = self.client.get(&url);
        if let Some(alertname) = alertname {
            // Alertmanager's matcher syntax; the value is quoted so any name is taken literally.
            request = request.query(&[("filter", format!("alertname={}", yaml_string(alertname)))]);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("alertmanager at {url} returned {status}: {body}");
        }
        response.json().await.with_context(|| format!("decode response of {url}"))
    }
}

/// A template glob that matches nothing, unique to this instance. Alertmanager echoes it in
/// `/api/v2/status`, which tells our instance from one a concurrent test may have started on
/// the same port.
fn marker_template(dir: &Path) -> String {
    dir.join("marker-*.tmpl").display().to_string()
}

/// Ready, and really the instance we started; see `marker_template`.
async fn is_ours_and_ready(client: &reqwest::Client, url: &str, marker: &str) -> bool {
    let status = async {
        let body: Value = client.get(format!("{url}/api/v2/status")).send().await.ok()?.json().await.ok()?;
        Some(body["config"]["original"].as_str()?.contains(marker))
    };
    status.await == Some(true) && http_ok(client, &format!("{url}/-/ready")).await
}

fn render_config(options: &AlertmanagerOptions, marker: &str) -> String {
    // `write!` into a String cannot fail, hence the ignored results below.
    let mut yaml = String::new();
    let _ = writeln!(yaml, "templates:");
    let _ = writeln!(yaml, "  - {}", yaml_string(marker));
    let _ = writeln!(yaml, "route:");
    let _ = writeln!(yaml, "  receiver: default");
    let _ = writeln!(yaml, "  group_by: [alertname]");
    let _ = writeln!(yaml, "  group_wait: {}", config_duration(options.group_wait));
    let _ = writeln!(yaml, "  group_interval: {}", config_duration(options.group_interval));
    let _ = writeln!(yaml, "  repeat_interval: {}", config_duration(options.repeat_interval));
    let _ = writeln!(yaml, "receivers:");
    let _ = writeln!(yaml, "  - name: default");
    if let Some(url) = &options.webhook_url {
        let _ = writeln!(yaml, "    webhook_configs:");
        let _ = writeln!(yaml, "      - url: {}", yaml_string(url));
        let _ = writeln!(yaml, "        send_resolved: true");
        if let Some(token) = &options.webhook_bearer {
            let _ = writeln!(yaml, "        http_config:");
            let _ = writeln!(yaml, "          authorization:");
            let _ = writeln!(yaml, "            credentials: {}", yaml_string(token));
        }
    }
    yaml
}
