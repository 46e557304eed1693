package model

// Workload claim names: interlock's names for a CI job's attributes,
// whichever platform issued them (the OIDC verifier maps each platform's
// token claims to these, the resolver maps the CI variables to them, and
// policy's identity.verified keys are checked against them).
const (
	ClaimRepository     = "repository"
	ClaimWorkflow       = "workflow"
	ClaimRef            = "ref"
	ClaimRefProtected   = "ref_protected"
	ClaimSHA            = "sha"
	ClaimRunID          = "run_id"
	ClaimRunAttempt     = "run_attempt"
	ClaimJobID          = "job_id"
	ClaimActor          = "actor"
	ClaimEnvironment    = "environment"
	ClaimJobWorkflowRef = "job_workflow_ref"
	ClaimEventName      = "event_name"
	ClaimOrganization   = "organization_slug"
	ClaimPipeline       = "pipeline_slug"
	ClaimStepKey        = "step_key"
)

// WorkloadClaimNames lists every claim name above, in a stable order.
func WorkloadClaimNames() []string {
	return []string{
		ClaimRepository, ClaimWorkflow, ClaimRef, ClaimRefProtected, ClaimSHA,
		ClaimRunID, ClaimRunAttempt, ClaimJobID, ClaimActor, ClaimEnvironment,
		ClaimJobWorkflowRef, ClaimEventName, ClaimOrganization, ClaimPipeline, ClaimStepKey,
	}
}

// Workload platforms (Workload.Platform, identity.oidc.issuers[].platform).
const (
	PlatformGitHub    = "github"
	PlatformGitLab    = "gitlab"
	PlatformBuildkite = "buildkite"
	PlatformGeneric   = "generic"
	// PlatformJenkins is seen in CI variables only: Jenkins issues no
	// OIDC ID tokens of its own.
	PlatformJenkins = "jenkins"
)
