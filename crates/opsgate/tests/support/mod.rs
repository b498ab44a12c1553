//! Shared by the binary's end-to-end tests: one-shot `opsgate` commands, `opsgate serve` on a
//! loopback port, and MCP clients of it. Each test file uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};

/// `opsgate ARGS --data-dir <data_dir>` run in `data_dir`, blind to the user's own config (no
/// `OPSGATE_CONFIG`, an empty config home).
pub fn opsgate(data_dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_opsgate"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OPSGATE_CONFIG")
        .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
        .current_dir(data_dir)
        .output()?)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A new API key named `name` with `roles`, made by `opsgate --config <config> keys create`; the
/// key alone (its stdout).
pub fn key(data_dir: &Path, config: &Path, name: &str, roles: &str) -> Result<String> {
    let config = config.to_str().context("config path is not UTF-8")?;
    let created = opsgate(data_dir, &["--config", config, "keys", "create", "--name", name, "--roles", roles])?;
    anyhow::ensure!(created.status.success(), "keys create --name {name} --roles {roles}: {}", stderr(&created));
    Ok(stdout(&created).trim().to_string())
}

pub type Client = RunningService<RoleClient, ()>;

/// `opsgate --config <config> --data-dir <data_dir> [global_args] serve` on `127.0.0.1:<port>`,
/// answering /healthz; killed on drop. Like [`opsgate`] it runs in `data_dir` (created if
/// missing), blind to the user's own config.
pub struct Served {
    child: tokio::process::Child,
    /// The MCP endpoint.
    pub url: String,
}

impl Served {
    pub async fn start(config: &Path, data_dir: &Path, port: u16, global_args: &[&str]) -> Result<Served> {
        std::fs::create_dir_all(data_dir)?;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsgate"))
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(global_args)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("OPSGATE_CONFIG")
            .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
            .current_dir(data_dir)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        for _ in 0..200 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
                && response.status().is_success()
            {
                return Ok(Served { child, url: format!("http://127.0.0.1:{port}/mcp") });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("opsgate serve never answered /healthz")
    }

    /// An MCP client over Streamable HTTP presenting the API key `key`.
    pub async fn client(&self, key: &str) -> Result<Client> {
        self.client_with((), key).await
    }

    /// An MCP client over Streamable HTTP presenting the API key `key`, its session handled by
    /// `handler`.
    pub async fn client_with<H: rmcp::ClientHandler>(
        &self,
        handler: H,
        key: &str,
    ) -> Result<RunningService<RoleClient, H>> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.clone()).auth_header(key.to_string());
        Ok(handler.serve(StreamableHttpClientTransport::from_config(config)).await?)
    }

    /// SIGTERM, then waits for the process to exit; an exit other than success is an error.
    pub async fn stop(mut self) -> Result<()> {
        let pid = self.child.id().context("child pid")?;
        Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .context("opsgate serve did not exit within 15s of SIGTERM")??;
        anyhow::ensure!(status.success(), "opsgate serve exited with {status} after SIGTERM");
        Ok(())
    }
}
