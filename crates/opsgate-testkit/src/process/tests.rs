//! Tests of the process wrapper with `sh` standing in for a backend, so that port conflicts,
//! early exits and clean-up are checked without depending on a real backend's timing.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::{Backend, Startup};

fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn port_conflict_is_reported_for_a_retry() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let script = "echo 'err=\"listen tcp 127.0.0.1:9090: bind: address already in use\"' >&2; exit 1";
    let mut backend = Backend::spawn("fake", sh(script), dir.path(), "KILL")?;
    let startup = backend.wait_ready(|| async { false }).await?;
    assert!(matches!(startup, Startup::PortTaken));
    Ok(())
}

#[tokio::test]
async fn early_exit_is_an_error_with_the_log_tail() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let script = "echo starting; echo 'parsing config: unknown field \"scrape\"' >&2; exit 3";
    let mut backend = Backend::spawn("fake", sh(script), dir.path(), "KILL")?;
    let error = match backend.wait_ready(|| async { false }).await {
        Ok(_) => anyhow::bail!("a backend that exited must not be ready"),
        Err(error) => error.to_string(),
    };
    assert!(error.starts_with("fake exited with exit status: 3"), "{error}");
    assert!(error.contains("starting\nparsing config: unknown field"), "{error}");
    Ok(())
}

#[tokio::test]
async fn drop_stops_the_process_and_deletes_its_directory() -> Result<()> {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("backend");
    std::fs::create_dir(&dir)?;
    // TERM rather than KILL checks that the watchdog passes the signal name through.
    let backend = Backend::spawn("fake", sh("exec sleep 60"), &dir, "TERM")?;
    let pid = backend.child.id();
    assert!(is_running(pid));

    drop(backend);
    assert!(!is_running(pid), "backend {pid} still running");
    assert!(!dir.exists(), "{} not deleted", dir.display());
    Ok(())
}
