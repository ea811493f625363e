# Data governance: a data flow is allowed only when every field's classification permits
# the destination, personal data stays in permitted regions, and special-category data
# has a documented legal basis.
#
# Input:
#   {"purpose": "training" | "analytics" | "support" | ...,
#    "destination": {"region": "eu-west-1", "system": "feature-store"},
#    "fields": [{"name", "classification": "public"|"internal"|"pii"|"special_category"}],
#    "legal_basis": "consent" | "contract" | ... (optional)}
package aumos.data_governance

eu_regions := {"eu-west-1", "eu-central-1", "eu-north-1"}

# Where personal data may be stored or processed.
residency := {"pii": eu_regions, "special_category": eu_regions}

classes contains f.classification if some f in input.fields

pii_fields contains f.name if {
	some f in input.fields
	f.classification in {"pii", "special_category"}
}

deny contains msg if {
	some f in input.fields
	allowed_regions := residency[f.classification]
	not input.destination.region in allowed_regions
	msg := sprintf("field %s (%s) may not leave %v; destination is %s", [f.name, f.classification, sort(allowed_regions), input.destination.region])
}

deny contains msg if {
	"special_category" in classes

	# object.get, not input.legal_basis: `not x in s` with x undefined is undefined in OPA.
	not object.get(input, "legal_basis", "") in {"explicit_consent", "legal_obligation"}
	msg := "special-category data needs explicit consent or a legal obligation"
}

deny contains msg if {
	input.purpose == "training"
	count(pii_fields) > 0
	not input.pseudonymised
	msg := sprintf("personal data used for training must be pseudonymised: %v", [sort(pii_fields)])
}

deny contains msg if {
	some f in input.fields
	not f.classification in {"public", "internal", "pii", "special_category"}
	msg := sprintf("field %s has an unknown classification %v", [f.name, f.classification])
}

default allow := false

allow if count(deny) == 0
