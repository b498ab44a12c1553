//! Policy files: read from the paths in `[policy] files` (a directory means its `*.rego` files, in
//! name order), compiled with the default bundle, and reloaded when their contents change.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use opsgate_policy::{Policy, PolicySource};
use opsgate_server::PolicyHandle;

use crate::config::RuntimeConfig;

/// How often the files are read again to look for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The policy files' contents, in load order. A missing or unreadable path is an error naming it.
pub fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<PolicySource>> {
    let mut sources = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read policy directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| file.extension().is_some_and(|extension| extension == "rego"))
                .collect();
            files.sort();
            for file in files {
                sources.push(read_source(&file)?);
            }
        } else {
            sources.push(read_source(path)?);
        }
    }
    Ok(sources)
}

fn read_source(path: &Path) -> anyhow::Result<PolicySource> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy file {}", path.display()))?;
    Ok(PolicySource { path: path.display().to_string(), text })
}

/// Compiles the configured policy: the default bundle (unless replaced) and the files.
pub fn load(config: &RuntimeConfig) -> anyhow::Result<Policy> {
    let sources = read_sources(&config.policy_files)?;
    Policy::load(sources, config.replace_default_policy).map_err(|error| anyhow::anyhow!("invalid policy: {error}"))
}

/// Reads the files every few seconds; when their contents change, compiles them and swaps the
/// policy in. A reload that fails keeps the policy in force and logs why. Stops with the runtime.
pub fn watch(handle: Arc<PolicyHandle>, config: &RuntimeConfig) -> Option<tokio::task::JoinHandle<()>> {
    if config.policy_files.is_empty() {
        return None;
    }
    let paths = config.policy_files.clone();
    let replace_default = config.replace_default_policy;
    let mut last = fingerprint(&paths);
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELOAD_INTERVAL).await;
            let now = fingerprint(&paths);
            if now == last {
                continue;
            }
            last = now;
            let loaded = read_sources(&paths).and_then(|sources| {
                Policy::load(sources, replace_default).map_err(|error| anyhow::anyhow!("invalid policy: {error}"))
            });
            match loaded {
                Ok(policy) => {
                    tracing::info!(files = ?paths, "policy reloaded");
                    handle.replace(policy);
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "policy reload failed; the previous policy stays in force")
                }
            }
        }
    }))
}

/// What the files hold now (an unreadable path counts as its error), to compare with the last
/// look.
fn fingerprint(paths: &[PathBuf]) -> Vec<(String, String)> {
    match read_sources(paths) {
        Ok(sources) => sources.into_iter().map(|source| (source.path, source.text)).collect(),
        Err(error) => vec![(String::new(), format!("{error:#}"))],
    }
}

/// `opsgate policy test`: every `test_` rule, one line each; exits 1 when any fails.
pub fn test_command(config: &RuntimeConfig, json: bool) -> anyhow::Result<ExitCode> {
    let outcomes = load(config)?.run_tests();
    let n_failed = outcomes.iter().filter(|outcome| !outcome.passed).count();
    for outcome in &outcomes {
        if json {
            println!("{}", serde_json::to_string(outcome)?);
        } else if outcome.passed {
            println!("PASS {}", outcome.name);
        } else {
            println!("FAIL {}: {}", outcome.name, outcome.detail.as_deref().unwrap_or("failed"));
        }
    }
    if !json {
        println!("{} passed, {n_failed} failed", outcomes.len() - n_failed);
    }
    Ok(if n_failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `opsgate policy eval --input FILE`: the decision for a hand-written input document, as JSON.
/// Exits 1 when the policy cannot decide (which, in a call, denies).
pub fn eval_command(config: &RuntimeConfig, input: &Path) -> anyhow::Result<ExitCode> {
    let text = if input == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the input document from stdin")?;
        text
    } else {
        std::fs::read_to_string(input).with_context(|| format!("cannot read input document {}", input.display()))?
    };
    let document: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("input document {} is not JSON", input.display()))?;
    if !document.is_object() {
        anyhow::bail!("input document {} must be a JSON object (docs/policy.md)", input.display());
    }
    match load(config)?.decide_value(document) {
        Ok(decision) => {
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("opsgate: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}
