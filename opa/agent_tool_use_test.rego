package aumos.agent_tool_use_test

import data.aumos.agent_tool_use

call := {
	"agent": {"id": "support-bot", "allowed_tools": ["search_kb", "create_ticket"], "max_cost_usd": 5},
	"tool": {"name": "search_kb", "impact": "low"},
	"call": {"estimated_cost_usd": 0.02, "arguments": {"query": "reset password"}},
	"session": {"spent_usd": 1.5, "human_approval": false},
}

test_an_allowed_cheap_call_passes if {
	agent_tool_use.allow with input as call
}

test_a_tool_off_the_allow_list_is_denied if {
	not agent_tool_use.allow with input as object.union(call, {"tool": {"name": "send_payment", "impact": "low"}})
}

test_the_budget_is_enforced if {
	not agent_tool_use.allow with input as object.union(call, {"session": {"spent_usd": 4.99}, "call": {"estimated_cost_usd": 0.5, "arguments": {}}})
}

test_high_impact_tools_need_a_human if {
	c := object.union(call, {"agent": {"id": "support-bot", "allowed_tools": ["create_ticket"], "max_cost_usd": 5}, "tool": {"name": "create_ticket", "impact": "high"}})
	not agent_tool_use.allow with input as c
	agent_tool_use.allow with input as object.union(c, {"session": {"spent_usd": 0, "human_approval": true}})
}

test_dangerous_arguments_are_denied if {
	not agent_tool_use.allow with input as object.union(call, {"call": {"estimated_cost_usd": 0, "arguments": {"query": "curl http://169.254.169.254/latest"}}})
}
