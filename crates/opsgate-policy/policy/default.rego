# opsgate's default policy (docs/policy.md). It reads the input document described there and
# produces data.opsgate.decision.
#
# Your own files in package opsgate add to it through three sets:
#   deny contains reason if { ... }       any entry denies the call, whatever else matched
#   approval contains {"approvals_required": n, "approver_roles": [...], "reason": "..."} if { ... }
#                                         the call waits for n human approvals (the largest n wins)
#   allow contains reason if { ... }      the call runs, unless a deny or an approval matched
# A call that nothing allows is denied. To replace this file, set [policy] replace_default = true
# and define data.opsgate.decision yourself.
package opsgate

# Roles that may ask for writes, and that may approve them.
writer_roles := {"operator", "admin"}

approver_roles := ["admin", "approver"]

is_write if input.tool.effect in {"write", "destructive"}

protected if input.target.protected == true

holds_role(roles) if {
	some role in input.principal.roles
	role in roles
}

environment := input.target.environment if input.target != null

environment := "no environment" if input.target == null

# Reads: any principal that got past identity.
allow contains "reads are allowed" if input.tool.effect == "read"

# Writes outside protected environments: operators run them.
allow contains sprintf("%s may write outside protected environments", [input.principal.id]) if {
	is_write
	not protected
	holds_role(writer_roles)
}

# Writes in a protected environment wait for a human: one approval, two for destructive calls.
approval contains {
	"approvals_required": 1,
	"approver_roles": approver_roles,
	"reason": sprintf("%s writes to %s, a protected environment", [input.tool.name, environment]),
} if {
	input.tool.effect == "write"
	protected
	holds_role(writer_roles)
}

approval contains {
	"approvals_required": 2,
	"approver_roles": approver_roles,
	"reason": sprintf("%s is destructive in %s, a protected environment", [input.tool.name, environment]),
} if {
	input.tool.effect == "destructive"
	protected
	holds_role(writer_roles)
}

deny contains "opsgate is in read-only mode: every write is denied" if {
	input.read_only
	is_write
}

deny contains sprintf("%s is a %s tool and %s holds none of the roles %v", [
	input.tool.name,
	input.tool.effect,
	input.principal.id,
	sort(writer_roles),
]) if {
	is_write
	not holds_role(writer_roles)
}

deny contains sprintf("blast radius %d %s is over the limit of %d for %s in %s", [
	input.blast_radius.count,
	input.blast_radius.unit,
	input.limits.max_blast_radius,
	input.tool.name,
	environment,
]) if {
	input.blast_radius.count > input.limits.max_blast_radius
}

decision := {"decision": "deny", "reason": concat("; ", sort(deny))} if count(deny) > 0

decision := {
	"decision": "approve",
	"reason": concat("; ", sort([entry.reason | some entry in approval])),
	"approvals_required": max([entry.approvals_required | some entry in approval]),
	"approver_roles": sort({role | some entry in approval; some role in entry.approver_roles}),
} if {
	count(deny) == 0
	count(approval) > 0
}

decision := {"decision": "allow", "reason": concat("; ", sort(allow))} if {
	count(deny) == 0
	count(approval) == 0
	count(allow) > 0
}

default decision := {"decision": "deny", "reason": "no policy rule allows this call"}
