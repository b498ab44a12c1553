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

#[test]
fn identity_defaults_leave_anonymous_to_the_rule_and_oauth_off() {
    let config = resolve("", &[]).expect("resolves");
    assert_eq!(config.identity.allow_anonymous, None);
    assert!(config.identity.oauth.is_none());
    assert_eq!(config.public_url, None);
    let config = resolve("[identity]\nallow_anonymous = false\n", &[]).expect("resolves");
    assert_eq!(config.identity.allow_anonymous, Some(false));
}

const OAUTH: &str = "[server]\npublic_url = \"https://opsgate.example.com/\"\n\
    [identity.oauth]\nissuer = \"https://auth.example.com/\"\njwks_url = \"https://auth.example.com/jwks\"\n";

#[test]
fn oauth_defaults_audience_to_the_public_url_and_maps_scopes_to_roles() {
    let text = format!(
        "{OAUTH}required_scopes = [\"opsgate:use\"]\nleeway_seconds = 30\n\
         [identity.oauth.roles]\n\"opsgate:write\" = [\"operator\"]\n\"opsgate:read\" = [\"reader\"]\n"
    );
    let config = resolve(&text, &[]).expect("resolves");
    assert_eq!(config.public_url.as_deref(), Some("https://opsgate.example.com"), "trailing slash dropped");
    let oauth = config.identity.oauth.expect("oauth configured");
    assert_eq!(oauth.audiences, vec!["https://opsgate.example.com".to_string()]);
    assert_eq!(oauth.issuer, "https://auth.example.com/");
    assert_eq!(oauth.authorization_servers, vec!["https://auth.example.com/".to_string()]);
    assert_eq!(format!("{:?}", oauth.algorithms), "[RS256, ES256]");
    assert_eq!(oauth.scopes_claim, "scope");
    assert_eq!(oauth.roles.get("opsgate:write"), Some(&vec!["operator".to_string()]));
    assert_eq!(oauth.required_scopes, vec!["opsgate:use".to_string()]);
    assert_eq!(oauth.leeway, std::time::Duration::from_secs(30));

    let text =
        format!("{OAUTH}audience = [\"api://opsgate\", \"https://opsgate.example.com\"]\nalgorithms = [\"ES384\"]\n");
    let oauth = resolve(&text, &[]).expect("resolves").identity.oauth.expect("oauth configured");
    assert_eq!(oauth.audiences, vec!["api://opsgate".to_string(), "https://opsgate.example.com".to_string()]);
    assert_eq!(format!("{:?}", oauth.algorithms), "[ES384]");
}

#[test]
fn oauth_mistakes_name_the_key() {
    let cases = [
        (format!("{OAUTH}algorithms = [\"none\"]\n"), "identity.oauth.algorithms: \"none\" is never accepted"),
        (format!("{OAUTH}algorithms = [\"HS256\"]\n"), "identity.oauth.algorithms: HS256 is a shared-secret algorithm"),
        (format!("{OAUTH}algorithms = [\"RS257\"]\n"), "identity.oauth.algorithms: unknown algorithm \"RS257\""),
        (format!("{OAUTH}algorithms = []\n"), "identity.oauth.algorithms: must name at least one algorithm"),
        (format!("{OAUTH}leeway_seconds = 3600\n"), "identity.oauth.leeway_seconds: must be at most 600"),
        (format!("{OAUTH}client_secret = \"x\"\n"), "unknown field `client_secret`"),
        (
            OAUTH.replace("https://auth.example.com/jwks", "http://auth.example.com/jwks"),
            "identity.oauth.jwks_url: must be https://",
        ),
        (
            OAUTH.replace("public_url = \"https://opsgate.example.com/\"\n", ""),
            "server.public_url: is required with [identity.oauth]",
        ),
        (
            OAUTH.replace("https://opsgate.example.com/", "opsgate.example.com"),
            "server.public_url: \"opsgate.example.com\"",
        ),
    ];
    for (text, expect) in cases {
        let message = error(&text);
        assert!(message.contains(expect), "{expect}: {message}");
    }
    let loopback = OAUTH.replace("https://auth.example.com/jwks", "http://127.0.0.1:8080/jwks");
    assert!(resolve(&loopback, &[]).is_ok(), "plain http is fine on loopback");
    let loopback = OAUTH.replace("https://auth.example.com/jwks", "http://[::1]:8080/jwks");
    assert!(resolve(&loopback, &[]).is_ok(), "plain http is fine on loopback");
}

#[test]
fn governance_sections_resolve_into_limits_rates_policy_files_and_approvals() {
    let config = resolve(
        "[[environments]]\nname = \"production\"\nprotected = true\nmax_blast_radius = 10\n\
         [limits.max_blast_radius]\nsilence_alert = 25\n\
         [rate_limits]\nread = { per_minute = 600, burst = 50 }\nwrite = { per_minute = 0 }\n\
         [policy]\nfiles = [\"policies\"]\n\
         [approvals]\nexpiry_minutes = 45\nwebhook_url = \"env:SLACK_WEBHOOK_URL\"\n",
        &[],
    )
    .expect("resolves");
    assert_eq!(config.blast_radius.max_for("silence_alert", Some("production")), Some(10));
    assert_eq!(config.blast_radius.max_for("silence_alert", Some("staging")), Some(25));
    assert_eq!(config.rate_limits.read, Some(opsgate_server::Rate { per_minute: 600.0, burst: 50.0 }));
    assert_eq!(config.rate_limits.write, None, "per_minute = 0 turns the limit off");
    assert_eq!(config.policy_files, vec![PathBuf::from("policies")], "relative to the config file's directory");
    assert_eq!(config.approval_expiry, std::time::Duration::from_secs(45 * 60));
    assert_eq!(config.approval_webhook.as_deref(), Some("env:SLACK_WEBHOOK_URL"));

    let defaults = resolve("", &[]).expect("resolves");
    assert_eq!(defaults.rate_limits, opsgate_server::RateLimits::default());
    assert_eq!(defaults.approval_expiry, std::time::Duration::from_secs(30 * 60));
}

#[test]
fn governance_mistakes_name_the_key() {
    for (text, key) in [
        ("[rate_limits]\nwrite = { per_minute = -1 }\n", "rate_limits.write.per_minute"),
        ("[rate_limits]\nread = { per_minute = 60, burst = 0.5 }\n", "rate_limits.read.burst"),
        ("[approvals]\nexpiry_minutes = 0\n", "approvals.expiry_minutes"),
        ("[approvals]\nwebhook_url = \"https://hooks.slack.com/services/T/B/secret\"\n", "approvals.webhook_url"),
        ("[policy]\nreplace_default = true\n", "policy.replace_default"),
    ] {
        let message = error(text);
        assert!(message.contains(key), "{text}: {message}");
        assert!(!message.contains("hooks.slack.com/services/T/B/secret"), "the secret is repeated: {message}");
    }
    assert!(error("[policy]\nfile = [\"x.rego\"]\n").contains("unknown field `file`"));
}

#[test]
fn hooks_resolve_secrets_by_source_and_mapping_rules_in_order() {
    let config = resolve(
        "[hooks]\nmax_body_bytes = 65536\n[hooks.github]\nsecret = \"env:GH\"\n[hooks.flux]\nsecret = \"file:/run/flux\"\n\
         [[hooks.mapping]]\nsource = \"github\"\nattribute = \"repository\"\npattern = \"^acme/(?P<service>.+)$\"\n\
         [[hooks.mapping]]\nattribute = \"branch\"\npattern = \"^main$\"\nenvironment = \"production\"\n",
        &[],
    )
    .expect("resolves");
    assert_eq!(config.hooks.max_body_bytes, 65536);
    assert_eq!(config.hooks.secrets, [("github", "env:GH".to_string()), ("flux", "file:/run/flux".to_string())]);
    let attributes: Vec<&str> = config.hooks.mapping.iter().map(|rule| rule.attribute.as_str()).collect();
    assert_eq!(attributes, ["repository", "branch"]);
    assert!(resolve("", &[]).expect("resolves").hooks.secrets.is_empty(), "no hook is on by default");
}

#[test]
fn hook_mistakes_name_the_key() {
    for (text, key, reason) in [
        ("[hooks.github]\nsecret = \"plain-value\"\n", "hooks.github.secret", "references"),
        ("[hooks]\nmax_body_bytes = 10\n", "hooks.max_body_bytes", "between"),
        (
            "[[hooks.mapping]]\nattribute = \"repository\"\npattern = \"(\"\nservice = \"x\"\n",
            "hooks.mapping[0]",
            "regular expression",
        ),
        ("[[hooks.mapping]]\nattribute = \"repository\"\npattern = \".*\"\n", "hooks.mapping[0]", "sets nothing"),
        ("[hooks.jenkins]\nsecret = \"env:J\"\n", "jenkins", "unknown field"),
    ] {
        let message = error(text);
        assert!(message.contains(key) && message.contains(reason), "{text}: {message}");
        assert!(!message.contains("plain-value"), "the secret is repeated: {message}");
    }
}

#[test]
fn the_catalog_resolves_paths_against_the_config_file_and_checks_its_health_settings() {
    let config = parse(
        "[catalog]\npaths = [\"catalog/\", \"/srv/payments/catalog-info.yaml\"]\nruntbooks = []\n",
        "/etc/opsgate/opsgate.toml",
    );
    let message = config.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(message.contains("unknown field `runtbooks`"), "{message}");

    let text = "[catalog]\npaths = [\"catalog/\", \"/srv/payments/catalog-info.yaml\"]\nrunbooks = [\"runbooks\"]\n\
                degraded_error_rate = 0.1\nhealth_timeout_seconds = 1.5\n";
    let config = parse(text, "opsgate.toml")
        .and_then(|file| {
            file.resolve(Some(PathBuf::from("/etc/opsgate/opsgate.toml")), &CliOverrides::default(), &env(&[]))
        })
        .expect("catalog resolves");
    let catalog = config.catalog.expect("a catalog");
    assert_eq!(
        catalog.sources.paths,
        [PathBuf::from("/etc/opsgate/catalog/"), PathBuf::from("/srv/payments/catalog-info.yaml")]
    );
    assert_eq!(catalog.sources.runbooks, [PathBuf::from("/etc/opsgate/runbooks")]);
    assert_eq!(catalog.health.degraded_error_rate, 0.1);
    assert_eq!(catalog.health.degraded_latency_p99, None);
    assert_eq!(catalog.health.timeout, std::time::Duration::from_millis(1_500));
    assert!(resolve("", &[]).expect("no catalog").catalog.is_none());

    for (text, expect) in [
        ("[catalog]\n", "catalog.paths: name at least one catalog file or directory (or runbooks)"),
        (
            "[catalog]\npaths = [\"c\"]\ndegraded_error_rate = 5\n",
            "catalog.degraded_error_rate: must be a share between 0 and 1, such as 0.05",
        ),
        (
            "[catalog]\npaths = [\"c\"]\ndegraded_latency_p99_seconds = -1\n",
            "catalog.degraded_latency_p99_seconds: must be between 0 and 3600",
        ),
        (
            "[catalog]\npaths = [\"c\"]\nhealth_timeout_seconds = 0\n",
            "catalog.health_timeout_seconds: must be between 0 and 60",
        ),
    ] {
        assert_eq!(error(text), format!("invalid config opsgate.toml: {expect}"));
    }
}

#[test]
fn events_are_kept_90_days_unless_said_otherwise() {
    let keep = |text: &str| resolve(text, &[]).map(|config| config.event_retention).expect("resolves");
    assert_eq!(keep(""), Some(chrono::Duration::days(90)));
    assert_eq!(keep("[events]\nretention_days = 7\n"), Some(chrono::Duration::days(7)));
    assert_eq!(keep("[events]\nretention_days = 0\n"), None, "0 keeps events forever");
    let message = error("[events]\nretention_days = 40000\n");
    assert!(message.contains("events.retention_days") && message.contains("at most 36500"), "{message}");
    let message = error("[events]\nretention = 3\n");
    assert!(message.contains("unknown field `retention`"), "{message}");
}
