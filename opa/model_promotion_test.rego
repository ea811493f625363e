package aumos.model_promotion_test

import data.aumos.model_promotion

good := {
	"model": {
		"name": "credit-scorer",
		"metrics": {"accuracy": 0.93, "f1": 0.88},
		"bias": {"demographic_parity_difference": 0.04},
		"datasets": [{"name": "loans-2025", "lineage_verified": true}],
	},
	"approvals": [{"user": "ana", "role": "ml_lead"}, {"user": "raj", "role": "risk_officer"}],
}

test_a_good_model_is_promoted if {
	model_promotion.allow with input as good
}

test_low_accuracy_blocks_promotion if {
	not model_promotion.allow with input as json.patch(good, [{"op": "replace", "path": "/model/metrics/accuracy", "value": 0.7}])
	"accuracy 0.7 is below the threshold 0.9" in model_promotion.deny with input as json.patch(good, [{"op": "replace", "path": "/model/metrics/accuracy", "value": 0.7}])
}

test_thresholds_can_be_overridden if {
	model_promotion.allow with input as object.union(json.patch(good, [{"op": "replace", "path": "/model/metrics/accuracy", "value": 0.8}]), {"thresholds": {"accuracy": 0.75}})
}

test_bias_blocks_promotion_in_either_direction if {
	not model_promotion.allow with input as json.patch(good, [{"op": "replace", "path": "/model/bias/demographic_parity_difference", "value": -0.2}])
}

test_unverified_lineage_blocks_promotion if {
	not model_promotion.allow with input as json.patch(good, [{"op": "add", "path": "/model/datasets/-", "value": {"name": "scraped", "lineage_verified": false}}])
}

test_missing_approval_blocks_promotion if {
	deny := model_promotion.deny with input as json.patch(good, [{"op": "remove", "path": "/approvals/1"}])
	deny == {"missing approval from a risk_officer"}
}
