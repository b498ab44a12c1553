# Tests of the default policy; `opsgate policy test` runs them with your own.
package opsgate_test

import data.opsgate

agent := {"id": "key:agent", "kind": "api_key", "roles": ["operator"]}

viewer := {"id": "key:viewer", "kind": "api_key", "roles": []}

production := {"name": "am-prod", "kind": "alertmanager", "environment": "production", "protected": true}

staging := {"name": "am-staging", "kind": "alertmanager", "environment": "staging", "protected": false}

call(principal, effect, target) := {
	"version": 1,
	"principal": principal,
	"tool": {"name": "silence_alert", "effect": effect, "server": null, "annotations": {"idempotent": false, "open_world": true}},
	"arguments": {},
	"target": target,
	"blast_radius": null,
	"limits": {},
	"read_only": false,
	"time": "2026-11-21T12:00:00.000Z",
}

test_reads_are_allowed_to_anyone if {
	opsgate.decision.decision == "allow" with input as call(viewer, "read", production)
}

test_operator_writes_outside_protected_environments if {
	opsgate.decision.decision == "allow" with input as call(agent, "write", staging)
}

test_write_in_protected_environment_needs_one_approval if {
	d := opsgate.decision with input as call(agent, "write", production)
	d.decision == "approve"
	d.approvals_required == 1
	"approver" in d.approver_roles
}

test_destructive_in_protected_environment_needs_two_approvals if {
	d := opsgate.decision with input as call(agent, "destructive", production)
	d.decision == "approve"
	d.approvals_required == 2
}

test_writes_need_a_writer_role if {
	d := opsgate.decision with input as call(viewer, "write", staging)
	d.decision == "deny"
	contains(d.reason, "holds none of the roles")
}

test_read_only_denies_every_write if {
	d := opsgate.decision with input as object.union(call(agent, "write", staging), {"read_only": true})
	d.decision == "deny"
	contains(d.reason, "read-only")
}

test_blast_radius_over_the_limit_is_denied_with_the_numbers if {
	over := object.union(call(agent, "write", production), {
		"blast_radius": {"count": 12, "unit": "alerts"},
		"limits": {"max_blast_radius": 10},
	})
	d := opsgate.decision with input as over
	d.decision == "deny"
	contains(d.reason, "blast radius 12 alerts is over the limit of 10")
}

test_unknown_effect_is_denied if {
	opsgate.decision.decision == "deny" with input as call(agent, "launch", staging)
}
