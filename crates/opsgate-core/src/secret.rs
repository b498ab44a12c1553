//! Secrets in configuration are references (`env:VAR`, `file:/path`), never inline values, and a
//! resolved secret never prints: its `Debug` and `Display` are `***`.

use serde::{Deserialize, Deserializer};

/// Where a secret lives. Parsing rejects anything that is not a reference, so a token pasted
/// into a config file is an error rather than a leak waiting to happen.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(formatter, "env:{name}"),
            SecretRef::File(path) => write!(formatter, "file:{path}"),
        }
    }
}

impl std::str::FromStr for SecretRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(name) = text.strip_prefix("env:").filter(|name| !name.is_empty()) {
            Ok(SecretRef::Env(name.to_string()))
        } else if let Some(path) = text.strip_prefix("file:").filter(|path| !path.is_empty()) {
            Ok(SecretRef::File(path.to_string()))
        } else {
            Err("secrets must be references: write env:VARIABLE or file:/path, not the value".to_string())
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_inline_values_are_refused() {
        assert_eq!("env:PROM_TOKEN".parse::<SecretRef>(), Ok(SecretRef::Env("PROM_TOKEN".to_string())));
        assert_eq!("file:/run/secret".parse::<SecretRef>(), Ok(SecretRef::File("/run/secret".to_string())));
        assert!("hunter2".parse::<SecretRef>().is_err());
        assert!("env:".parse::<SecretRef>().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
    }
}
