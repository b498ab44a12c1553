//! Config parsing and resolution, without touching the process environment.

use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

fn resolve(text: &str, pairs: &[(&str, &str)]) -> Result<RuntimeConfig, ConfigError> {
    parse(text, "opsgate.toml")?.resolve(Some(PathBuf::from("opsgate.toml")), &CliOverrides::default(), &env(pairs))
}

fn error(text: &str) -> String {
    match resolve(text, &[]) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn defaults_need_no_file() {
    let config = FileConfig::default()
        .resolve(None, &CliOverrides::default(), &env(&[("HOME", "/home/sre")]))
        .expect("defaults resolve");
    assert_eq!(config.listen.to_string(), "127.0.0.1:7420");
    assert_eq!(config.data_dir, PathBuf::from("/home/sre/.local/share/opsgate"));
    assert_eq!(config.store, None);
    assert_eq!(config.output_budget_tokens, 4_000);
    assert_eq!(config.call_timeout, std::time::Duration::from_secs(30));
    assert!(!config.read_only);
}

#[test]
fn unknown_keys_name_the_key_and_the_file() {
    let message = error("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
    assert!(message.starts_with("invalid config opsgate.toml:"), "{message}");
    assert!(message.contains("unknown field `listne`"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    let message = error("[connectors.loki.prod]\nurl = \"http://x\"\n");
    assert!(message.contains("unknown field `loki`"), "{message}");
}

#[test]
fn invalid_values_name_the_key_and_reason() {
    assert_eq!(
        error("[server]\nlisten = \"localhost\"\n"),
        "invalid config opsgate.toml: server.listen: \"localhost\" is not an address like 127.0.0.1:7420"
    );
    assert_eq!(
        error("[connectors.prometheus.Prod_EU]\nurl = \"http://p:9090\"\n"),
        "invalid config opsgate.toml: connectors.prometheus.Prod_EU: instance names use a-z, 0-9 and -, starting with a letter"
    );
    assert_eq!(
        error("[connectors.prometheus.prod]\nurl = \"p:9090\"\n"),
        "invalid config opsgate.toml: connectors.prometheus.prod.url: \"p:9090\" is not an http:// or https:// URL"
    );
    assert_eq!(
        error("[connectors.alertmanager.prod]\nurl = \"http://am:9093\"\nprometheus = \"nope\"\n"),
        "invalid config opsgate.toml: connectors.alertmanager.prod.prometheus: no prometheus instance named \"nope\""
    );
    assert!(error("[server]\ncall_timeout_seconds = -1\n").contains("server.call_timeout_seconds"));
    let message = error("[connectors.prometheus.prod]\nurl = \"http://p\"\nbearer_token = \"abc123\"\n");
    assert!(message.contains("secrets must be references"), "{message}");
    assert!(!message.contains("abc123"), "the inline secret must not be echoed: {message}");
}

#[test]
fn environment_overrides_the_file_and_the_command_line_overrides_both() {
    let text = "[server]\nlisten = \"127.0.0.1:1000\"\nread_only = false\n";
    let config =
        resolve(text, &[("OPSGATE_LISTEN", "127.0.0.1:2000"), ("OPSGATE_READ_ONLY", "true")]).expect("resolves");
    assert_eq!(config.listen.port(), 2000);
    assert!(config.read_only);
    let overrides = CliOverrides { listen: Some("127.0.0.1:3000".to_string()), ..CliOverrides::default() };
    let config = parse(text, "opsgate.toml")
        .and_then(|file| file.resolve(None, &overrides, &env(&[("OPSGATE_LISTEN", "127.0.0.1:2000")])))
        .expect("resolves");
    assert_eq!(config.listen.port(), 3000);
    let message = resolve(text, &[("OPSGATE_READ_ONLY", "maybe")]).map(|_| ()).expect_err("bad bool").to_string();
    assert_eq!(
        message,
        "invalid config opsgate.toml: environment variable OPSGATE_READ_ONLY: \"maybe\" is not true or false"
    );
}

#[test]
fn connectors_keep_their_order_and_environments_mark_protection() {
    let config = resolve(
        "[connectors.prometheus.prod-eu]\nurl = \"http://a\"\nenvironment = \"production\"\n\
         [connectors.prometheus.dev]\nurl = \"http://b\"\n\
         [[environments]]\nname = \"production\"\nprotected = true\n",
        &[],
    )
    .expect("resolves");
    assert_eq!(config.prometheus.keys().collect::<Vec<_>>(), vec!["prod-eu", "dev"]);
    assert!(config.is_protected("production"));
    assert!(!config.is_protected("default"));
}

#[test]
fn secret_references_resolve_through_env_without_printing_values() {
    let reference: opsgate_core::SecretRef = "env:PROM_TOKEN".parse().expect("reference");
    let secret = resolve_secret(Some(&reference), &env(&[("PROM_TOKEN", "s3cr3t")])).expect("resolves");
    assert_eq!(secret.as_ref().map(opsgate_core::Secret::expose), Some("s3cr3t"));
    let missing = resolve_secret(Some(&reference), &env(&[])).expect_err("missing variable");
    assert_eq!(missing.to_string(), "environment variable PROM_TOKEN is not set");
}

#[test]
fn the_starter_config_parses() {
    parse(crate::starter::STARTER, "starter").expect("the starter config is valid");
}
