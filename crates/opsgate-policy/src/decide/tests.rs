//! Decision tests for the bootstrap policy.

use opsgate_core::{Decision, Effect, Principal};
use serde_json::Map;

use super::*;

fn check(effect: Effect, read_only: bool, expect: &str) {
    let principal = Principal::anonymous();
    let arguments = Map::new();
    let input = PolicyInput {
        version: INPUT_VERSION,
        principal: &principal,
        tool: ToolFacts { name: "silence_alert".to_string(), effect, server: None },
        arguments: &arguments,
        target: None,
        blast_radius: None,
        read_only,
        time: "2026-11-21T00:00:00Z",
    };
    let decision = decide(&input);
    let rendered = match &decision {
        Decision::Allow => "allow".to_string(),
        Decision::Approve { reason, .. } => format!("approve: {reason}"),
        Decision::Deny { reason } => format!("deny: {reason}"),
    };
    assert_eq!(rendered, expect);
}

#[test]
fn reads_are_allowed() {
    check(Effect::Read, false, "allow");
    check(Effect::Read, true, "allow");
}

#[test]
fn writes_are_denied_with_a_reason_naming_the_tool() {
    check(
        Effect::Write,
        false,
        "deny: silence_alert is a write tool and this opsgate allows only read tools (write approvals are not configured)",
    );
    check(
        Effect::Destructive,
        false,
        "deny: silence_alert is a destructive tool and this opsgate allows only read tools (write approvals are not configured)",
    );
}

#[test]
fn read_only_mode_is_named_in_the_reason() {
    check(Effect::Write, true, "deny: opsgate is in read-only mode: silence_alert is a write tool");
}
