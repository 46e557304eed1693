package oidcjob

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/interlock/interlock/model"
)

const (
	// maxClaimValue and maxClaims bound what a token puts in the journal.
	maxClaimValue = 256
	maxClaims     = 64
)

// platformClaims maps, for each platform, the token's claim names to
// interlock's. The names are the platforms' own (GitHub Actions, GitLab
// id_tokens, Buildkite OIDC).
var platformClaims = map[string]map[string]string{
	model.PlatformGitHub: {
		"repository": model.ClaimRepository, "workflow": model.ClaimWorkflow, "ref": model.ClaimRef,
		"run_id": model.ClaimRunID, "run_attempt": model.ClaimRunAttempt, "actor": model.ClaimActor,
		"environment": model.ClaimEnvironment, "job_workflow_ref": model.ClaimJobWorkflowRef,
		"sha": model.ClaimSHA, "event_name": model.ClaimEventName,
	},
	model.PlatformGitLab: {
		"project_path": model.ClaimRepository, "ref": model.ClaimRef, "pipeline_id": model.ClaimRunID,
		"job_id": model.ClaimJobID, "user_login": model.ClaimActor, "environment": model.ClaimEnvironment,
		"ref_protected": model.ClaimRefProtected, "sha": model.ClaimSHA,
	},
	model.PlatformBuildkite: {
		"organization_slug": model.ClaimOrganization, "pipeline_slug": model.ClaimPipeline,
		"build_number": model.ClaimRunID, "job_id": model.ClaimJobID, "step_key": model.ClaimStepKey,
	},
}

// registered are the JWT's own claims, which a generic issuer's mapping
// leaves out (Workload has fields for iss, sub and exp).
var registered = map[string]bool{"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true}

// mapClaims turns a verified token's claims into interlock's names.
func mapClaims(platform string, all map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	names, known := platformClaims[platform]
	if !known {
		// generic: string claims as they are
		for name, raw := range all {
			if len(out) == maxClaims || registered[name] {
				continue
			}
			var s string
			if json.Unmarshal(raw, &s) == nil {
				out[name] = limit(s)
			}
		}
		return out
	}
	for from, to := range names {
		if v, ok := scalar(all[from]); ok {
			out[to] = v
		}
	}
	if platform == model.PlatformBuildkite {
		org, pipe := out[model.ClaimOrganization], out[model.ClaimPipeline]
		if org != "" && pipe != "" {
			out[model.ClaimRepository] = limit(org + "/" + pipe)
		}
	}
	return out
}

// scalar is a claim's value as text: a string as it is, a number or a
// boolean as written in the token (Buildkite's build_number is a number,
// GitLab's ref_protected a string).
func scalar(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return limit(x), true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// limit cuts a value at maxClaimValue bytes, on a character boundary.
func limit(s string) string {
	if len(s) <= maxClaimValue {
		return s
	}
	cut := maxClaimValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
