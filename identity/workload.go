package identity

import (
	"context"

	"github.com/interlock/interlock/model"
)

// WorkloadVerifier verifies the OIDC ID token of the CI job behind a
// process (identity/oidcjob). The engine sets it from the config, so that
// identity needs to know neither the config nor the network.
type WorkloadVerifier interface {
	// TokenEnv names the environment variables to pick out of a
	// process's environment for Verify.
	TokenEnv() []string
	// Verify returns the workload a token among env proves: verified,
	// or claimed with Error saying why no token verified; nil when env
	// holds no token.
	Verify(ctx context.Context, env map[string]string) *model.Workload
}

// workloadConf is the verifier in force and the variables it reads.
type workloadConf struct {
	v    WorkloadVerifier
	vars map[string]struct{}
}

// SetWorkloadVerifier puts v in force for the resolutions that start
// from now on (nil: none, workloads are claimed only). The engine calls
// it at start and on a reload that changes identity.oidc. A process's
// resolution cached from before may still lack the token variables v
// reads, for the few seconds such a cache lives.
func (r *Resolver) SetWorkloadVerifier(v WorkloadVerifier) {
	if v == nil {
		r.wl.Store(nil)
		return
	}
	wc := &workloadConf{v: v, vars: map[string]struct{}{}}
	for _, name := range v.TokenEnv() {
		wc.vars[name] = struct{}{}
	}
	r.wl.Store(wc)
}

// workload fills id.Workload: verified from a token among job (the
// process's token variables) when one verifies; otherwise claimed, from
// the CI variables of its environment (id.Claimed), with the reason a
// token failed if one did; nil when the process shows neither a token
// nor CI variables.
func (r *Resolver) workload(ctx context.Context, id *model.Identity, job map[string]string) {
	var w *model.Workload
	if wc := r.wl.Load(); wc != nil && len(job) > 0 {
		w = wc.v.Verify(ctx, job)
	}
	if w != nil && w.Provenance == model.ProvVerified {
		id.Workload = w
		return
	}
	claimed := claimedWorkload(id.Claimed)
	if w == nil {
		id.Workload = claimed
		return
	}
	w.Provenance = model.ProvClaimed
	if claimed != nil {
		w.Platform, w.Claims = claimed.Platform, claimed.Claims
	}
	id.Workload = w
}

// ciPlatform maps one platform's CI variables (all in procfsClaimVars)
// to interlock's claim names. marker is the variable the platform sets in
// every job.
type ciPlatform struct {
	name, marker string
	vars         map[string]string
}

var ciPlatforms = []ciPlatform{
	{model.PlatformGitHub, "GITHUB_ACTIONS", map[string]string{
		"GITHUB_REPOSITORY": model.ClaimRepository, "GITHUB_WORKFLOW": model.ClaimWorkflow, "GITHUB_REF": model.ClaimRef,
		"GITHUB_RUN_ID": model.ClaimRunID, "GITHUB_RUN_ATTEMPT": model.ClaimRunAttempt, "GITHUB_ACTOR": model.ClaimActor,
		"GITHUB_SHA": model.ClaimSHA,
	}},
	{model.PlatformGitLab, "GITLAB_CI", map[string]string{
		"CI_PROJECT_PATH": model.ClaimRepository, "CI_PIPELINE_ID": model.ClaimRunID, "CI_JOB_ID": model.ClaimJobID,
		"GITLAB_USER_LOGIN": model.ClaimActor, "CI_COMMIT_SHA": model.ClaimSHA,
	}},
	{model.PlatformBuildkite, "BUILDKITE", map[string]string{
		"BUILDKITE_ORGANIZATION_SLUG": model.ClaimOrganization, "BUILDKITE_PIPELINE_SLUG": model.ClaimPipeline,
		"BUILDKITE_BUILD_NUMBER": model.ClaimRunID, "BUILDKITE_JOB_ID": model.ClaimJobID,
	}},
	{model.PlatformJenkins, "JENKINS_URL", map[string]string{
		"JOB_NAME": model.ClaimWorkflow, "BUILD_NUMBER": model.ClaimRunID,
	}},
}

// claimedWorkload is the workload the CI variables claim: the first
// platform whose marker is set, else the first with any variable set;
// nil when none is.
func claimedWorkload(env map[string]string) *model.Workload {
	if len(env) == 0 {
		return nil
	}
	var found *ciPlatform
	for i := range ciPlatforms {
		if _, ok := env[ciPlatforms[i].marker]; ok {
			found = &ciPlatforms[i]
			break
		}
	}
	for i := 0; found == nil && i < len(ciPlatforms); i++ {
		for v := range ciPlatforms[i].vars {
			if _, ok := env[v]; ok {
				found = &ciPlatforms[i]
				break
			}
		}
	}
	if found == nil {
		return nil
	}
	w := &model.Workload{Provenance: model.ProvClaimed, Platform: found.name}
	for v, claim := range found.vars {
		if val, ok := env[v]; ok {
			if w.Claims == nil {
				w.Claims = map[string]string{}
			}
			w.Claims[claim] = val
		}
	}
	if org, pipe := w.Claims[model.ClaimOrganization], w.Claims[model.ClaimPipeline]; org != "" && pipe != "" {
		w.Claims[model.ClaimRepository] = org + "/" + pipe
	}
	return w
}
