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

/// Compiles the configured policy: the default bundle (unless replaced) and the files. Without
/// files it is the process's shared default bundle.
pub fn load(config: &RuntimeConfig) -> anyhow::Result<Arc<Policy>> {
    let invalid = |error: opsgate_policy::PolicyError| anyhow::anyhow!("invalid policy: {error}");
    if config.policy_files.is_empty() && !config.replace_default_policy {
        return opsgate_server::policy::shared_default().map_err(invalid);
    }
    let sources = read_sources(&config.policy_files)?;
    Ok(Arc::new(Policy::load(sources, config.replace_default_policy).map_err(invalid)?))
}

/// Reads the files every few seconds; when their contents change, compiles them and swaps the
/// policy in. A reload that fails keeps the policy in force and logs why. Stops with the runtime.
pub fn watch(handle: Arc<PolicyHandle>, config: &RuntimeConfig) -> Option<tokio::task::JoinHandle<()>> {
    if config.policy_files.is_empty() {
        return None;
    }
    Some(watch_files(handle, config.policy_files.clone(), config.replace_default_policy, RELOAD_INTERVAL))
}

fn watch_files(
    handle: Arc<PolicyHandle>,
    paths: Vec<PathBuf>,
    replace_default: bool,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let mut last = fingerprint(&paths);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
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
    })
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

#[cfg(test)]
mod tests {
    use opsgate_core::{Decision, Effect, Principal};
    use opsgate_policy::{Annotations, Limits, PolicyInput, ToolFacts};

    use super::*;

    fn denied(handle: &PolicyHandle, tool: &str) -> bool {
        let principal = Principal::anonymous();
        let arguments = serde_json::Map::new();
        let input = PolicyInput {
            version: opsgate_policy::decide::INPUT_VERSION,
            principal: &principal,
            tool: ToolFacts { name: tool, effect: Effect::Read, server: None, annotations: Annotations::default() },
            arguments: &arguments,
            target: None,
            blast_radius: None,
            limits: Limits::default(),
            read_only: false,
            time: "2026-11-21T00:00:00.000Z",
        };
        matches!(handle.current().decide(&input), Decision::Deny { .. })
    }

    fn deny_rule(tool: &str) -> String {
        format!("package opsgate\n\ndeny contains \"no {tool}\" if input.tool.name == \"{tool}\"\n")
    }

    async fn eventually(condition: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_last_good_policy() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("team.rego");
        std::fs::write(&file, deny_rule("alpha"))?;
        let paths = vec![dir.path().to_path_buf()];
        let sources = read_sources(&paths)?;
        let handle = Arc::new(PolicyHandle::new(Policy::load(sources, false)?));
        assert!(denied(&handle, "alpha") && !denied(&handle, "beta"));
        let watcher = watch_files(handle.clone(), paths, false, Duration::from_millis(20));

        std::fs::write(&file, deny_rule("beta"))?;
        assert!(eventually(|| denied(&handle, "beta") && !denied(&handle, "alpha")).await, "the change was not loaded");

        std::fs::write(&file, "package opsgate\n\ndeny contains \"x\" if {\n")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(denied(&handle, "beta") && !denied(&handle, "alpha"), "a broken file replaced the policy");

        std::fs::write(&file, deny_rule("gamma"))?;
        assert!(eventually(|| denied(&handle, "gamma") && !denied(&handle, "beta")).await, "no recovery after a fix");
        watcher.abort();
        Ok(())
    }
}
