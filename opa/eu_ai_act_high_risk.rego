# EU AI Act high-risk screening: a system whose use case falls in an Annex III area is
# high-risk, and may be deployed only when the controls the Act requires of high-risk
# systems (Articles 9-15 and 17) are in place.
#
# Input:
#   {"system": {"name", "use_case": "credit_scoring" | "recruitment" | ...},
#    "controls": {"risk_management": true, "data_governance": true, ...}}
package aumos.eu_ai_act_high_risk

# Annex III areas, by use case.
annex_iii := {
	"biometric_identification": "1. Biometrics",
	"critical_infrastructure": "2. Critical infrastructure",
	"education_admission": "3. Education and vocational training",
	"exam_scoring": "3. Education and vocational training",
	"recruitment": "4. Employment and workers management",
	"worker_monitoring": "4. Employment and workers management",
	"credit_scoring": "5. Access to essential private and public services",
	"insurance_pricing": "5. Access to essential private and public services",
	"public_benefits_eligibility": "5. Access to essential private and public services",
	"law_enforcement_risk_assessment": "6. Law enforcement",
	"migration_risk_assessment": "7. Migration, asylum and border control",
	"judicial_decision_support": "8. Administration of justice and democratic processes",
}

# Controls required of high-risk systems, with the Article that requires them.
required_controls := {
	"risk_management": "Art. 9",
	"data_governance": "Art. 10",
	"technical_documentation": "Art. 11",
	"record_keeping": "Art. 12",
	"transparency": "Art. 13",
	"human_oversight": "Art. 14",
	"accuracy_robustness_cybersecurity": "Art. 15",
	"quality_management": "Art. 17",
}

high_risk if annex_iii[input.system.use_case]

annex_iii_area := annex_iii[input.system.use_case]

missing_controls contains sprintf("%s (%s)", [control, article]) if {
	high_risk
	some control, article in required_controls
	not object.get(input, ["controls", control], false)
}

deny contains msg if {
	some missing in missing_controls
	msg := sprintf("high-risk system (Annex III %s) lacks %s", [annex_iii_area, missing])
}

default allow := false

allow if count(deny) == 0
