//! The environment a stdio child starts with: opsgate's own, minus variables that look like
//! credentials, unless the server's entry allows them by name; plus the entry's `env`.

use std::collections::BTreeMap;

/// Name endings that mark a credential in an environment, beyond the names the redactor masks
/// (`opsgate_policy::redact::is_secret_name`: token, secret, password, API key, `*_KEY`,
/// credentials…).
const SECRET_SUFFIXES: &[&str] = &["_PASS", "_AUTH"];

/// Vendors whose variables carry credentials (or say where to find them).
const SECRET_PREFIXES: &[&str] = &[
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "GITHUB_",
    "GH_",
    "GITLAB_",
    "OPENAI_",
    "ANTHROPIC_",
    "SLACK_",
    "STRIPE_",
    "DATADOG_",
    "DD_",
    "VAULT_",
    "NPM_",
    "DOCKER_",
    "HEROKU_",
    "CLOUDFLARE_",
    "PGPASSWORD",
    "OPSGATE_",
];

/// Whether a variable's name says it holds a credential: a name the redactor masks, a
/// credential ending, or a vendor's prefix.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    opsgate_policy::redact::is_secret_name(&upper)
        || SECRET_SUFFIXES.iter().any(|suffix| upper.ends_with(suffix))
        || SECRET_PREFIXES.iter().any(|prefix| upper.starts_with(prefix))
}

/// The child's environment from `parent` (opsgate's), `allow` (names passed although they look
/// secret) and `configured` (the entry's own `env`, passed as given).
pub fn child_env(
    parent: impl IntoIterator<Item = (String, String)>,
    allow: &[String],
    configured: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = parent
        .into_iter()
        .filter(|(name, _)| !looks_secret(name) || allow.iter().any(|allowed| allowed == name))
        .collect();
    env.extend(configured.iter().map(|(name, value)| (name.clone(), value.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_variables_stay_home_unless_allowed() {
        let parent = [
            "PATH",
            "HOME",
            "LANG",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "STRIPE_API_KEY",
            "MY_SERVICE_SECRET",
            "OPSGATE_DATA_DIR",
            "NPM_CONFIG_CACHE",
            "api_key",
            "KEYBOARD",
            "SESSION_TOKEN_X",
            "SMTP_PASS",
            "DB_CREDENTIALS_FILE",
            "PRIVATE_KEY_PEM",
        ]
        .map(|name| (name.to_string(), format!("value of {name}")));
        let configured = BTreeMap::from([("MEMORY_FILE_PATH".to_string(), "/tmp/m.json".to_string())]);
        let env = child_env(parent, &["DB_PASSWORD".to_string()], &configured);
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(names, ["DB_PASSWORD", "HOME", "KEYBOARD", "LANG", "MEMORY_FILE_PATH", "PATH"]);
    }
}
