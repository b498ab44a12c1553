//! Real MCP servers from the registries, for federation tests. `scripts/test.sh` installs the
//! reference servers from npm into `.tools/mcp-servers` with Node 22 (whose `bin` directory it puts
//! on `PATH`), and the Python SDK into the virtual environment `.tools/python-mcp`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process::{Backend, PORT_ATTEMPTS, Startup};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The entry point of `@modelcontextprotocol/<package>` (`server-everything`, `server-memory`,
/// `server-filesystem`), to run with `node`. An error when it is not installed, naming the command
/// that installs it.
pub fn mcp_server_script(package: &str) -> Result<PathBuf> {
    let script = repository_root()
        .join(".tools/mcp-servers/node_modules/@modelcontextprotocol")
        .join(package)
        .join("dist/index.js");
    if !script.exists() {
        bail!("{} is missing: run scripts/test.sh, which installs the MCP servers the tests use", script.display());
    }
    Ok(script)
}

/// The Python interpreter with the `mcp` SDK (2.x) and the test server written with it
/// (`fixtures/runbooks_server.py`): run `python script` for stdio.
pub fn python_mcp_server() -> Result<(PathBuf, PathBuf)> {
    let python = repository_root().join(".tools/python-mcp/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/test.sh, which installs the Python MCP SDK", python.display());
    }
    Ok((python, Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runbooks_server.py")))
}

/// `@modelcontextprotocol/server-everything` serving Streamable HTTP on a loopback port, which
/// a test can take away and bring back on the same port.
pub struct HttpEverything {
    port: u16,
    backend: Option<Backend>,
}

impl HttpEverything {
    pub async fn start() -> Result<HttpEverything> {
        for _ in 0..PORT_ATTEMPTS {
            let mut server = HttpEverything { port: crate::free_port(), backend: None };
            match server.spawn().await? {
                Startup::Ready => return Ok(server),
                Startup::PortTaken => continue,
            }
        }
        bail!("server-everything: every port tried was taken ({PORT_ATTEMPTS} attempts)")
    }

    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Kills the server (SIGKILL): connections drop and the port closes.
    pub fn stop(&mut self) {
        self.backend = None;
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        match self.spawn().await? {
            Startup::Ready => Ok(()),
            Startup::PortTaken => bail!("server-everything: port {} was taken while it was down", self.port),
        }
    }

    async fn spawn(&mut self) -> Result<Startup> {
        let dir = tempfile::Builder::new()
            .prefix("opsgate-everything-")
            .tempdir()
            .context("create a temporary directory")?
            .keep();
        let mut command = Command::new("node");
        command.arg(mcp_server_script("server-everything")?).arg("streamableHttp").env("PORT", self.port.to_string());
        let mut backend = Backend::spawn("server-everything", command, &dir, "KILL")?;
        let address = format!("127.0.0.1:{}", self.port);
        let startup = backend
            .wait_ready(|| {
                let listening = backend_log_says(&dir, "listening on port");
                let address = address.clone();
                async move { listening && tokio::net::TcpStream::connect(address).await.is_ok() }
            })
            .await?;
        if let Startup::Ready = startup {
            self.backend = Some(backend);
        }
        Ok(startup)
    }
}

fn backend_log_says(dir: &Path, text: &str) -> bool {
    std::fs::read_to_string(dir.join("server-everything.log")).is_ok_and(|log| log.contains(text))
}
