//! Real MCP servers from the npm registry, for federation tests. `scripts/test.sh` installs them
//! into `.tools/mcp-servers` with Node 22 (whose `bin` directory it puts on `PATH`).

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The entry point of `@modelcontextprotocol/<package>` (`server-everything`, `server-memory`),
/// to run with `node`. An error when it is not installed, naming the command that installs it.
pub fn mcp_server_script(package: &str) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join(".tools/mcp-servers/node_modules/@modelcontextprotocol").join(package).join("dist/index.js");
    if !script.exists() {
        bail!("{} is missing: run scripts/test.sh, which installs the MCP servers the tests use", script.display());
    }
    Ok(script)
}
