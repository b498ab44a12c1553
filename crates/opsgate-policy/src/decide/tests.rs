//! Policy tests: the default bundle's decisions through the Rust input type, its own `test_`
//! rules, and every way a policy can be wrong failing closed.

use opsgate_core::{Decision, Effect, Principal, PrincipalKind, Target};
use serde_json::{Map, json};

use super::*;

fn operator() -> Principal {
    Principal { id: "key:agent".into(), kind: PrincipalKind::ApiKey, roles: vec!["operator".into()] }
}

fn target(protected: bool) -> Target {
    Target {
        name: "am".into(),
        kind: "alertmanager".into(),
        environment: if protected { "production".into() } else { "staging".into() },
        protected,
    }
}

fn decide_with(policy: &Policy, principal: &Principal, effect: Effect, target: Option<&Target>) -> Decision {
    let arguments = Map::new();
    let input = PolicyInput {
        version: INPUT_VERSION,
        principal,
        tool: ToolFacts { name: "silence_alert", effect, server: None, annotations: Annotations::default() },
        arguments: &arguments,
        target,
        blast_radius: Some(BlastRadius { count: 3, unit: "alerts" }),
        limits: Limits { max_blast_radius: Some(5) },
        read_only: false,
        time: "2026-11-21T00:00:00.000Z",
    };
    policy.decide(&input)
}

fn user(path: &str, text: &str) -> PolicySource {
    PolicySource { path: path.into(), text: text.into() }
}

#[test]
fn the_default_bundle_passes_its_own_tests() -> Result<(), PolicyError> {
    let outcomes = Policy::default_bundle()?.run_tests();
    assert!(outcomes.len() >= 8, "{outcomes:?}");
    let failed: Vec<_> = outcomes.iter().filter(|outcome| !outcome.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    Ok(())
}

#[test]
fn the_default_bundle_decides_through_the_input_type() -> Result<(), PolicyError> {
    let policy = Policy::default_bundle()?;
    let anonymous = Principal::anonymous();
    assert_eq!(decide_with(&policy, &anonymous, Effect::Read, None), Decision::Allow);
    assert_eq!(decide_with(&policy, &operator(), Effect::Write, Some(&target(false))), Decision::Allow);
    match decide_with(&policy, &operator(), Effect::Write, Some(&target(true))) {
        Decision::Approve { approvals_required: 1, approver_roles, reason } => {
            assert_eq!(approver_roles, vec!["admin".to_string(), "approver".to_string()]);
            assert!(reason.contains("production"), "{reason}");
        }
        other => panic!("expected one approval, got {other:?}"),
    }
    assert!(matches!(
        decide_with(&policy, &operator(), Effect::Destructive, Some(&target(true))),
        Decision::Approve { approvals_required: 2, .. }
    ));
    assert!(matches!(decide_with(&policy, &anonymous, Effect::Write, None), Decision::Deny { .. }));
    Ok(())
}

#[test]
fn user_files_add_denials_to_the_default() -> Result<(), PolicyError> {
    let extra = user(
        "team.rego",
        "package opsgate\n\ndeny contains \"no silences on Fridays\" if input.tool.name == \"silence_alert\"\n",
    );
    let policy = Policy::load(vec![extra], false)?;
    assert_eq!(
        decide_with(&policy, &operator(), Effect::Write, Some(&target(false))),
        Decision::Deny { reason: "no silences on Fridays".into() }
    );
    Ok(())
}

#[test]
fn a_file_that_does_not_parse_is_named_with_its_line() {
    let broken = user("policies/broken.rego", "package opsgate\n\ndeny contains \"x\" if {\n  input.tool.name ==\n");
    let error = Policy::load(vec![broken], false).map(|_| ()).expect_err("a broken file must not load");
    let message = error.to_string();
    assert!(message.contains("policies/broken.rego"), "{message}");
    assert!(message.contains(":4") || message.contains(":5"), "{message}");
}

#[test]
fn replacing_the_default_requires_a_decision_rule() {
    let without = user("mine.rego", "package opsgate\n\nallow_all := true\n");
    assert!(matches!(Policy::load(vec![without], true), Err(PolicyError::NoDecision)));
    let with = user("mine.rego", "package opsgate\n\ndecision := {\"decision\": \"allow\"}\n");
    assert!(Policy::load(vec![with], true).is_ok());
}

#[test]
fn evaluation_errors_and_malformed_outputs_deny() -> Result<(), PolicyError> {
    let cases = [
        // Two complete definitions with different values: a conflict at evaluation time.
        (
            "package opsgate\n\ndecision := {\"decision\": \"allow\"}\n\ndecision := {\"decision\": \"deny\", \"reason\": \"x\"} if input.read_only == false\n",
            "policy evaluation failed",
        ),
        ("package opsgate\n\ndecision := {\"decision\": \"maybe\"}\n", "not a decision"),
        (
            "package opsgate\n\ndecision := {\"decision\": \"approve\", \"reason\": \"r\", \"approvals_required\": 0, \"approver_roles\": [\"a\"]}\n",
            "0 approvals",
        ),
        (
            "package opsgate\n\ndecision := {\"decision\": \"approve\", \"reason\": \"r\", \"approvals_required\": 1, \"approver_roles\": []}\n",
            "no approver_roles",
        ),
        ("package opsgate\n\ndecision := {\"decision\": \"allow\"} if input.tool.name == \"nothing\"\n", "undefined"),
    ];
    for (text, expect) in cases {
        let policy = Policy::load(vec![user("case.rego", text)], true)?;
        match decide_with(&policy, &operator(), Effect::Read, None) {
            Decision::Deny { reason } => assert!(reason.contains(expect), "{text}: {reason}"),
            other => panic!("{text}: expected a denial, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn decide_value_takes_a_hand_written_input_document() -> Result<(), PolicyError> {
    let policy = Policy::default_bundle()?;
    let input = json!({
        "version": 1,
        "principal": {"id": "alice", "kind": "local_user", "roles": ["operator"]},
        "tool": {"name": "expire_silence", "effect": "write", "server": null, "annotations": {}},
        "arguments": {"id": "x"},
        "target": {"name": "am", "kind": "alertmanager", "environment": "production", "protected": true},
        "blast_radius": {"count": 40, "unit": "alerts"},
        "limits": {"max_blast_radius": 25},
        "read_only": false,
        "time": "2026-11-21T00:00:00.000Z"
    });
    match policy.decide_value(input) {
        Ok(Decision::Deny { reason }) => {
            assert!(reason.contains("blast radius 40 alerts is over the limit of 25"), "{reason}")
        }
        other => panic!("expected a blast-radius denial, got {other:?}"),
    }
    Ok(())
}

#[test]
fn failing_test_rules_are_reported() -> Result<(), PolicyError> {
    let tests = user(
        "mine_test.rego",
        "package mine_test\n\nimport data.opsgate\n\ntest_wrong if {\n  opsgate.decision.decision == \"allow\" with input as {\"tool\": {\"effect\": \"write\"}}\n}\n\ntest_right if {\n  opsgate.decision.decision == \"deny\" with input as {\"tool\": {\"effect\": \"write\"}, \"principal\": {\"id\": \"x\", \"roles\": []}}\n}\n",
    );
    let outcomes = Policy::load(vec![tests], false)?.run_tests();
    let mine: Vec<(&str, bool)> = outcomes
        .iter()
        .filter(|outcome| outcome.name.starts_with("data.mine_test."))
        .map(|outcome| (outcome.name.as_str(), outcome.passed))
        .collect();
    assert_eq!(mine, vec![("data.mine_test.test_wrong", false), ("data.mine_test.test_right", true)]);
    Ok(())
}

#[test]
fn decisions_are_cached_only_when_the_policy_cannot_see_per_call_facts() -> Result<(), PolicyError> {
    assert_eq!(Policy::default_bundle()?.caching(), Some(false));
    let by_arguments = user("a.rego", "package opsgate\n\ndeny contains \"big\" if input.arguments.limit > 100\n");
    assert_eq!(Policy::load(vec![by_arguments], false)?.caching(), Some(true));
    for text in [
        "package opsgate\n\ndeny contains \"late\" if input.time > \"2026\"\n",
        "package opsgate\n\nseen := input\n",
        "package opsgate\n\ndeny contains \"x\" if input[\"time\"] == 1\n",
        "package opsgate\n\ndeny contains \"x\" if time.now_ns() > 0\n",
    ] {
        assert_eq!(Policy::load(vec![user("b.rego", text)], false)?.caching(), None, "{text}");
    }
    Ok(())
}

#[test]
fn a_cached_decision_follows_the_arguments_when_the_policy_reads_them() -> Result<(), PolicyError> {
    let policy = Policy::load(
        vec![user("a.rego", "package opsgate\n\ndeny contains \"too long\" if input.arguments.hours > 4\n")],
        false,
    )?;
    let principal = operator();
    let staging = target(false);
    for (hours, denied) in [(2, false), (8, true), (2, false), (8, true)] {
        let mut arguments = Map::new();
        arguments.insert("hours".into(), json!(hours));
        let input = PolicyInput {
            version: INPUT_VERSION,
            principal: &principal,
            tool: ToolFacts {
                name: "silence_alert",
                effect: Effect::Write,
                server: None,
                annotations: Annotations::default(),
            },
            arguments: &arguments,
            target: Some(&staging),
            blast_radius: None,
            limits: Limits::default(),
            read_only: false,
            time: "2026-11-21T00:00:00.000Z",
        };
        assert_eq!(matches!(policy.decide(&input), Decision::Deny { .. }), denied, "hours {hours}");
        assert_eq!(policy.decide(&input), policy.evaluate(&input));
    }
    Ok(())
}
