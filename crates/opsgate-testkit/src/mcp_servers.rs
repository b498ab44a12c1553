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

/// Which server an `HttpMcpServer` runs.
#[derive(Debug, Clone, Copy)]
enum HttpKind {
    /// `@modelcontextprotocol/server-everything` (TypeScript SDK; negotiates 2025-11-25).
    Everything,
    /// `fixtures/runbooks_server.py` (Python SDK 2.x; negotiates 2026-07-28, answers in SSE).
    Runbooks,
}

impl HttpKind {
    fn name(self) -> &'static str {
        match self {
            HttpKind::Everything => "server-everything",
            HttpKind::Runbooks => "runbooks-http",
        }
    }

    fn command(self, port: u16) -> Result<Command> {
        match self {
            HttpKind::Everything => {
                let mut command = Command::new("node");
                command
                    .arg(mcp_server_script("server-everything")?)
                    .arg("streamableHttp")
                    .env("PORT", port.to_string());
                Ok(command)
            }
            HttpKind::Runbooks => {
                let (python, script) = python_mcp_server()?;
                let mut command = Command::new(python);
                command.arg(script).arg("--http").arg(port.to_string());
                Ok(command)
            }
        }
    }

    /// What the server logs once it listens.
    fn ready_line(self) -> &'static str {
        match self {
            HttpKind::Everything => "listening on port",
            HttpKind::Runbooks => "Uvicorn running on",
        }
    }
}

/// A real MCP server serving Streamable HTTP at `/mcp` on a loopback port, which a test can take
/// away and bring back on the same port.
pub struct HttpMcpServer {
    kind: HttpKind,
    port: u16,
    backend: Option<Backend>,
}

impl HttpMcpServer {
    /// `@modelcontextprotocol/server-everything`, an upstream on the 2025-11-25 revision.
    pub async fn everything() -> Result<HttpMcpServer> {
        HttpMcpServer::start(HttpKind::Everything).await
    }

    /// The Python SDK's runbooks server (see `python_mcp_server`), an upstream on the stateless
    /// 2026-07-28 revision.
    pub async fn runbooks() -> Result<HttpMcpServer> {
        HttpMcpServer::start(HttpKind::Runbooks).await
    }

    async fn start(kind: HttpKind) -> Result<HttpMcpServer> {
        for _ in 0..PORT_ATTEMPTS {
            let mut server = HttpMcpServer { kind, port: crate::free_port(), backend: None };
            match server.spawn().await? {
                Startup::Ready => return Ok(server),
                Startup::PortTaken => continue,
            }
        }
        bail!("{}: every port tried was taken ({PORT_ATTEMPTS} attempts)", kind.name())
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
            Startup::PortTaken => bail!("{}: port {} was taken while it was down", self.kind.name(), self.port),
        }
    }

    async fn spawn(&mut self) -> Result<Startup> {
        let name = self.kind.name();
        let dir = tempfile::Builder::new()
            .prefix(&format!("opsgate-{name}-"))
            .tempdir()
            .context("create a temporary directory")?
            .keep();
        let mut backend = Backend::spawn(name, self.kind.command(self.port)?, &dir, "KILL")?;
        let address = format!("127.0.0.1:{}", self.port);
        let log = dir.join(format!("{name}.log"));
        let ready_line = self.kind.ready_line();
        let startup = backend
            .wait_ready(|| {
                let listening = std::fs::read_to_string(&log).is_ok_and(|log| log.contains(ready_line));
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
