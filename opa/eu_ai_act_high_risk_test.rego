package aumos.eu_ai_act_high_risk_test

import data.aumos.eu_ai_act_high_risk as act

all_controls := {c: true | some c, _ in act.required_controls}

test_a_chatbot_is_not_high_risk if {
	not act.high_risk with input as {"system": {"name": "faq-bot", "use_case": "customer_faq"}}
	act.allow with input as {"system": {"name": "faq-bot", "use_case": "customer_faq"}}
}

test_credit_scoring_is_high_risk_and_needs_every_control if {
	i := {"system": {"name": "scorer", "use_case": "credit_scoring"}, "controls": object.remove(all_controls, ["human_oversight"])}
	act.high_risk with input as i
	act.annex_iii_area == "5. Access to essential private and public services" with input as i
	act.missing_controls == {"human_oversight (Art. 14)"} with input as i
	not act.allow with input as i
}

test_a_high_risk_system_with_every_control_may_deploy if {
	act.allow with input as {"system": {"name": "cv-screener", "use_case": "recruitment"}, "controls": all_controls}
}
