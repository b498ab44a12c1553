//! The policy decision for one call: Rego, evaluated in-process by regorus. The input document is
//! versioned (`INPUT_VERSION`) because users write policies against it; docs/policy.md describes
//! it field by field.

use opsgate_core::{Decision, Effect, Principal, Target};
use serde::Serialize;
use serde_json::{Map, Value};

/// The version of the input document; bumped on any incompatible change.
pub const INPUT_VERSION: u32 = 1;

/// The rule every policy must define.
pub const DECISION_RULE: &str = "data.opsgate.decision";

/// The bundle that ships with opsgate (DESIGN.md's defaults).
pub const DEFAULT_POLICY: &str = include_str!("../policy/default.rego");
pub const DEFAULT_POLICY_PATH: &str = "opsgate:default.rego";
/// The default bundle's own `test_` rules, run by `opsgate policy test` and the unit tests.
pub const DEFAULT_POLICY_TESTS: &str = include_str!("../policy/default_test.rego");
pub const DEFAULT_POLICY_TESTS_PATH: &str = "opsgate:default_test.rego";

#[derive(Debug, Clone, Serialize)]
pub struct ToolFacts<'a> {
    pub name: &'a str,
    pub effect: Effect,
    /// The federated server the tool comes from; `None` for built-in tools.
    pub server: Option<&'a str>,
    pub annotations: Annotations,
}

/// The MCP annotations a policy may weigh.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Annotations {
    pub idempotent: bool,
    pub open_world: bool,
}

/// How many things a write touches, from the tool's dry run.
#[derive(Debug, Clone, Serialize)]
pub struct BlastRadius<'a> {
    pub count: u64,
    pub unit: &'a str,
}

/// The configured limits that apply to this call (the tightest of its environment's and its
/// tool's).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_blast_radius: Option<u64>,
}

/// Everything a policy may look at. `time` is passed in (RFC 3339) because this crate reads no
/// clock.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput<'a> {
    pub version: u32,
    pub principal: &'a Principal,
    pub tool: ToolFacts<'a>,
    pub arguments: &'a Map<String, Value>,
    pub target: Option<&'a Target>,
    pub blast_radius: Option<BlastRadius<'a>>,
    pub limits: Limits,
    pub read_only: bool,
    pub time: &'a str,
}

/// One policy file.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// Where it came from, as errors should name it.
    pub path: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file does not parse or the rules do not compile; regorus names the file, line and column.
    #[error("{0}")]
    Invalid(String),
    #[error("the policy defines no {DECISION_RULE} rule (with replace_default = true, your files must define it)")]
    NoDecision,
}

/// A loaded, compiled policy. Immutable but for its decision cache: a reload builds a new one.
pub struct Policy {
    compiled: regorus::CompiledPolicy,
    /// What it was compiled from; `run_tests` builds an engine from them again rather than keep
    /// one in memory for the server's whole life.
    sources: Vec<PolicySource>,
    cache: Option<DecisionCache>,
}

/// Decisions by the input fields the policy can see. Rego evaluation costs tens of microseconds
/// a call, more than the rest of the pipeline; most calls repeat the same facts. The cache is on
/// only when the policy's text provably reads nothing that changes per call beyond the key: no
/// `input.time`, no clock builtin, no whole-`input` reference; `input.arguments` puts the
/// canonical arguments into the key.
struct DecisionCache {
    with_arguments: bool,
    decisions: std::sync::RwLock<std::collections::HashMap<String, Decision>>,
}

/// Entries before the cache starts over (a bound, not an LRU: the key space is small).
const CACHE_ENTRIES: usize = 4_096;

impl std::fmt::Debug for Policy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<&str> = self.sources.iter().map(|source| source.path.as_str()).collect();
        formatter.debug_struct("Policy").field("sources", &paths).finish()
    }
}

/// The outcome of one `test_` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// `data.<package>.<rule>`.
    pub name: String,
    pub passed: bool,
    /// Why it failed when it did not evaluate to true.
    pub detail: Option<String>,
}

impl Policy {
    /// Compiles the default bundle (unless `replace_default`) and `user` files together.
    pub fn load(user: Vec<PolicySource>, replace_default: bool) -> Result<Policy, PolicyError> {
        let mut sources = Vec::new();
        if !replace_default {
            sources.push(PolicySource { path: DEFAULT_POLICY_PATH.to_string(), text: DEFAULT_POLICY.to_string() });
            sources.push(PolicySource {
                path: DEFAULT_POLICY_TESTS_PATH.to_string(),
                text: DEFAULT_POLICY_TESTS.to_string(),
            });
        }
        sources.extend(user);
        let mut engine = engine_for(&sources)?;
        if !sources.iter().any(|source| defines_rule(&source.text, "opsgate", "decision")) {
            return Err(PolicyError::NoDecision);
        }
        let compiled = engine
            .compile_with_entrypoint(&DECISION_RULE.into())
            .map_err(|error| PolicyError::Invalid(error.to_string()))?;
        let cache = cacheability(&sources).map(|with_arguments| DecisionCache {
            with_arguments,
            decisions: std::sync::RwLock::new(std::collections::HashMap::new()),
        });
        Ok(Policy { compiled, sources, cache })
    }

    /// The default bundle alone.
    pub fn default_bundle() -> Result<Policy, PolicyError> {
        Policy::load(Vec::new(), false)
    }

    /// The decision for `input`. Anything that goes wrong in evaluation denies, saying why.
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        let Some(cache) = &self.cache else { return self.evaluate(input) };
        let key = cache_key(input, cache.with_arguments);
        if let Some(decision) = cache.decisions.read().ok().and_then(|decisions| decisions.get(&key).cloned()) {
            return decision;
        }
        let decision = self.evaluate(input);
        if let Ok(mut decisions) = cache.decisions.write() {
            if decisions.len() >= CACHE_ENTRIES {
                decisions.clear();
            }
            decisions.insert(key, decision.clone());
        }
        decision
    }

    /// Evaluates the Rego, bypassing the cache (the benchmark measures both).
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        match serde_json::to_value(input) {
            Ok(input) => self.decide_value(input).unwrap_or_else(|reason| Decision::Deny { reason }),
            Err(error) => Decision::Deny { reason: format!("policy input could not be built: {error}") },
        }
    }

    /// Whether decisions are cached (see `DecisionCache`), and whether the key holds arguments.
    pub fn caching(&self) -> Option<bool> {
        self.cache.as_ref().map(|cache| cache.with_arguments)
    }

    /// The decision for an input document given as JSON (`opsgate policy eval`).
    pub fn decide_value(&self, input: Value) -> Result<Decision, String> {
        let output = self
            .compiled
            .eval_with_input(regorus::Value::from(input))
            .map_err(|error| format!("policy evaluation failed: {error}"))?;
        if output == regorus::Value::Undefined {
            return Err(format!("policy evaluation failed: {DECISION_RULE} is undefined for this input"));
        }
        let output = serde_json::to_value(&output).map_err(|error| format!("policy output is not JSON: {error}"))?;
        parse_decision(output)
    }

    /// Runs every rule named `test_*` in every file and reports each.
    pub fn run_tests(&self) -> Vec<TestOutcome> {
        let engine = match engine_for(&self.sources) {
            Ok(engine) => engine,
            Err(error) => {
                let name = "(compile)".to_string();
                return vec![TestOutcome { name, passed: false, detail: Some(error.to_string()) }];
            }
        };
        let mut outcomes = Vec::new();
        for source in &self.sources {
            let Some(package) = package_of(&source.text) else { continue };
            for rule in test_rules(&source.text) {
                let name = format!("data.{package}.{rule}");
                let mut engine = engine.clone();
                let outcome = match engine.eval_rule(name.clone()) {
                    Ok(regorus::Value::Bool(true)) => TestOutcome { name, passed: true, detail: None },
                    Ok(regorus::Value::Undefined) => {
                        TestOutcome { name, passed: false, detail: Some("undefined (a condition did not hold)".into()) }
                    }
                    Ok(other) => TestOutcome { name, passed: false, detail: Some(format!("evaluated to {other}")) },
                    Err(error) => TestOutcome { name, passed: false, detail: Some(error.to_string()) },
                };
                outcomes.push(outcome);
            }
        }
        outcomes
    }
}

/// `Some(with_arguments)` when decisions can be cached, `None` when the policy may read something
/// that changes with every call. Conservative: comments are stripped, and any `input` that is not
/// followed by `.` (other than `with input as` in tests) counts as reading all of it.
fn cacheability(sources: &[PolicySource]) -> Option<bool> {
    let mut with_arguments = false;
    for source in sources {
        for line in source.text.lines() {
            let code = line.split('#').next().unwrap_or_default();
            if code.contains("input.time") || code.contains("time.now_ns") || code.contains("rand.") {
                return None;
            }
            with_arguments |= code.contains("input.arguments");
            let mut rest = code;
            while let Some(index) = rest.find("input") {
                let before = &rest[..index];
                let after = &rest[index + "input".len()..];
                let word_start = !before.ends_with(|character: char| character.is_alphanumeric() || character == '_');
                let word_end = !after.starts_with(|character: char| character.is_alphanumeric() || character == '_');
                if word_start && word_end && !after.starts_with('.') && !before.trim_end().ends_with("with") {
                    return None;
                }
                rest = after;
            }
        }
    }
    Some(with_arguments)
}

/// Every field of the input but the time, unambiguously joined.
fn cache_key(input: &PolicyInput<'_>, with_arguments: bool) -> String {
    use std::fmt::Write;
    let mut key = String::with_capacity(160);
    let principal = input.principal;
    let _ = write!(key, "{}\u{1f}{}\u{1f}{}", principal.id, principal.kind.as_str(), principal.roles.join("\u{1e}"));
    let tool = &input.tool;
    let _ = write!(
        key,
        "\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}{}",
        tool.name,
        tool.effect.as_str(),
        tool.server.unwrap_or("\u{0}"),
        u8::from(tool.annotations.idempotent),
        u8::from(tool.annotations.open_world)
    );
    match input.target {
        Some(target) => {
            let _ = write!(
                key,
                "\u{1f}{}\u{1e}{}\u{1e}{}\u{1e}{}",
                target.name, target.kind, target.environment, target.protected
            );
        }
        None => key.push_str("\u{1f}\u{0}"),
    }
    match &input.blast_radius {
        Some(radius) => {
            let _ = write!(key, "\u{1f}{}\u{1e}{}", radius.count, radius.unit);
        }
        None => key.push_str("\u{1f}\u{0}"),
    }
    let _ = write!(key, "\u{1f}{:?}\u{1f}{}\u{1f}{}", input.limits.max_blast_radius, input.read_only, input.version);
    if with_arguments {
        key.push('\u{1f}');
        key.push_str(&opsgate_core::canonical::canonical_object(input.arguments));
    }
    key
}

/// An engine holding `sources`, with builtin errors strict (an error, not undefined).
fn engine_for(sources: &[PolicySource]) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    for source in sources {
        engine
            .add_policy(source.path.clone(), source.text.clone())
            .map_err(|error| PolicyError::Invalid(error.to_string()))?;
    }
    Ok(engine)
}

/// The policy's output as a `Decision`, checked: an approval asks for at least one approver and
/// names the roles that may approve.
fn parse_decision(output: Value) -> Result<Decision, String> {
    let decision: Decision = serde_json::from_value(output.clone())
        .map_err(|error| format!("policy output {output} is not a decision: {error}"))?;
    match &decision {
        Decision::Approve { approvals_required: 0, .. } => {
            Err("policy output asks for 0 approvals; use allow instead".to_string())
        }
        Decision::Approve { approver_roles, .. } if approver_roles.is_empty() => {
            Err("policy output asks for approval but names no approver_roles".to_string())
        }
        _ => Ok(decision),
    }
}

/// The package a Rego file declares.
fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|line| line.trim().strip_prefix("package ").map(|name| name.trim().to_string()))
}

/// Names of rules defined as `test_…` at the start of a line.
fn test_rules(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let name: String =
                line.chars().take_while(|character| character.is_ascii_alphanumeric() || *character == '_').collect();
            (name.starts_with("test_") && name.len() < line.len()).then_some(name)
        })
        .collect();
    names.dedup();
    names
}

/// Whether `text` is in `package` and defines `rule` at the start of a line.
fn defines_rule(text: &str, package: &str, rule: &str) -> bool {
    package_of(text).as_deref() == Some(package)
        && text.lines().any(|line| {
            line.strip_prefix(rule).is_some_and(|rest| rest.starts_with([' ', ':', '=', '\t']) || rest.is_empty())
                || line.strip_prefix("default ").is_some_and(|rest| rest.trim_start().starts_with(rule))
        })
}

#[cfg(test)]
mod tests;
