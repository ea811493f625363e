# Model promotion gate: a model may be promoted to production only when its evaluation
# metrics meet the thresholds, its bias stays within bounds, its training data has
# verified lineage, and the required people approved it.
#
# Input:
#   {"model": {"name", "stage", "metrics": {"accuracy", "f1"},
#              "bias": {"demographic_parity_difference"},
#              "datasets": [{"name", "lineage_verified"}]},
#    "approvals": [{"user", "role"}],
#    "thresholds": {...optional overrides...}}
package aumos.model_promotion

default_thresholds := {"accuracy": 0.9, "f1": 0.85, "max_demographic_parity_difference": 0.1}

thresholds := object.union(default_thresholds, object.get(input, "thresholds", {}))

required_approver_roles := {"ml_lead", "risk_officer"}

deny contains msg if {
	some metric in ["accuracy", "f1"]
	value := object.get(input.model.metrics, metric, 0)
	value < thresholds[metric]
	msg := sprintf("%s %v is below the threshold %v", [metric, value, thresholds[metric]])
}

deny contains msg if {
	diff := object.get(input.model, ["bias", "demographic_parity_difference"], 1)
	abs(diff) > thresholds.max_demographic_parity_difference
	msg := sprintf("demographic parity difference %v exceeds %v", [diff, thresholds.max_demographic_parity_difference])
}

deny contains msg if {
	count(object.get(input.model, "datasets", [])) == 0
	msg := "no training datasets are declared"
}

deny contains msg if {
	some ds in input.model.datasets
	not ds.lineage_verified
	msg := sprintf("dataset %s has no verified lineage", [ds.name])
}

approved_roles contains a.role if some a in input.approvals

deny contains msg if {
	some role in required_approver_roles
	not role in approved_roles
	msg := sprintf("missing approval from a %s", [role])
}

default allow := false

allow if count(deny) == 0
