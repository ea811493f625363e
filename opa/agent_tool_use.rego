# AI agent tool-use control: an agent may call a tool only when the tool is on its
# allow-list, the call stays within its budget, high-impact tools have a human approval,
# and arguments do not try to reach outside permitted scopes.
#
# Input:
#   {"agent": {"id", "allowed_tools": [...], "max_cost_usd"},
#    "tool": {"name", "impact": "low" | "high"},
#    "call": {"estimated_cost_usd", "arguments": {...}},
#    "session": {"spent_usd", "human_approval": bool}}
package aumos.agent_tool_use

blocked_argument_patterns := [`(?i)rm\s+-rf`, `(?i)drop\s+table`, `(?i)\b169\.254\.169\.254\b`]

deny contains msg if {
	not input.tool.name in {t | some t in input.agent.allowed_tools}
	msg := sprintf("tool %s is not on agent %s's allow-list", [input.tool.name, input.agent.id])
}

deny contains msg if {
	total := object.get(input, ["session", "spent_usd"], 0) + object.get(input, ["call", "estimated_cost_usd"], 0)
	total > input.agent.max_cost_usd
	msg := sprintf("the call would bring spending to %v USD, over the budget of %v USD", [total, input.agent.max_cost_usd])
}

deny contains msg if {
	input.tool.impact == "high"
	not object.get(input, ["session", "human_approval"], false)
	msg := sprintf("tool %s is high-impact and needs a human approval", [input.tool.name])
}

deny contains msg if {
	some key, value in object.get(input, ["call", "arguments"], {})
	is_string(value)
	some pattern in blocked_argument_patterns
	regex.match(pattern, value)
	msg := sprintf("argument %s matches a blocked pattern", [key])
}

default allow := false

allow if count(deny) == 0
