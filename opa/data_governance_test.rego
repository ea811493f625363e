package aumos.data_governance_test

import data.aumos.data_governance

flow := {
	"purpose": "analytics",
	"destination": {"region": "eu-west-1", "system": "warehouse"},
	"fields": [{"name": "email", "classification": "pii"}, {"name": "country", "classification": "public"}],
}

test_pii_within_the_eu_is_allowed if {
	data_governance.allow with input as flow
}

test_pii_leaving_the_eu_is_denied if {
	not data_governance.allow with input as object.union(flow, {"destination": {"region": "us-east-1", "system": "warehouse"}})
}

test_public_data_may_go_anywhere if {
	data_governance.allow with input as {"purpose": "analytics", "destination": {"region": "us-east-1"}, "fields": [{"name": "country", "classification": "public"}]}
}

test_special_category_needs_a_legal_basis if {
	f := object.union(flow, {"fields": [{"name": "diagnosis", "classification": "special_category"}]})
	not data_governance.allow with input as f
	data_governance.allow with input as object.union(f, {"legal_basis": "explicit_consent"})
}

test_training_on_pii_needs_pseudonymisation if {
	t := object.union(flow, {"purpose": "training"})
	not data_governance.allow with input as t
	data_governance.allow with input as object.union(t, {"pseudonymised": true})
}

test_unknown_classifications_are_denied if {
	not data_governance.allow with input as object.union(flow, {"fields": [{"name": "x", "classification": "secret-ish"}]})
}
