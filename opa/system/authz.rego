# OPA's own API authorisation (OPA runs with --authentication=token --authorization=basic).
# Only the governance service, holding the token OPA was given in its environment, may use
# the REST API; anyone may ask GET /health. Tenants' policies can neither call opa.runtime
# nor reference data.system (the service refuses both before uploading), so they cannot
# learn the token.
package system.authz

token := opa.runtime().env.AUMOS_GOVERNANCE_OPA_TOKEN

default allow := false

allow if {
	input.method == "GET"
	input.path == ["health"]
}

allow if {
	count(token) >= 32
	input.identity == token
}
