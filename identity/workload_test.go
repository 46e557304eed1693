package identity

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/identity/oidcjob"
	"github.com/interlock/interlock/internal/testkit/oidctest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// TestProcfsParseEnvSecrets: the token variables are picked out whole,
// apart from the claims, and never among them; a cut or oversized one is
// left out.
func TestProcfsParseEnvSecrets(t *testing.T) {
	secret := map[string]struct{}{"INTERLOCK_ID_TOKEN": {}, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": {}, "HUGE": {}}
	tok := strings.Repeat("t", 2000)
	env := "GITHUB_REPOSITORY=acme/billing\x00INTERLOCK_ID_TOKEN=" + tok + "\x00INTERLOCK_ID_TOKEN=second\x00" +
		"HUGE=" + strings.Repeat("h", procfsSecretMaxValue+1) + "\x00PATH=/bin\x00ACTIONS_ID_TOKEN_REQUEST_TOKEN=cut"
	claims, secrets := procfsParseEnv([]byte(env), true, secret)
	if !reflect.DeepEqual(claims, map[string]string{"GITHUB_REPOSITORY": "acme/billing"}) {
		t.Errorf("claims = %q", claims)
	}
	if !reflect.DeepEqual(secrets, map[string]string{"INTERLOCK_ID_TOKEN": tok}) {
		t.Errorf("secrets = %v (the first occurrence whole; no oversized or cut value)", slices.Collect(func(yield func(string) bool) {
			for k, v := range secrets {
				yield(k + "=" + v[:min(len(v), 10)])
			}
		}))
	}
	if _, s := procfsParseEnv([]byte(env), false, nil); s != nil {
		t.Errorf("secrets read with none asked for: %d", len(s))
	}
}

// TestClaimedWorkload: the CI variables give a claimed workload under
// interlock's claim names; without any, none.
func TestClaimedWorkload(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want *model.Workload
	}{
		{"github", map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/billing", "GITHUB_REF": "refs/heads/main", "CI": "true"},
			&model.Workload{Provenance: model.ProvClaimed, Platform: "github", Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main"}}},
		{"gitlab", map[string]string{"GITLAB_CI": "true", "CI_PROJECT_PATH": "acme/billing", "CI_JOB_ID": "9"},
			&model.Workload{Provenance: model.ProvClaimed, Platform: "gitlab", Claims: map[string]string{"repository": "acme/billing", "job_id": "9"}}},
		{"buildkite without its marker", map[string]string{"BUILDKITE_ORGANIZATION_SLUG": "acme", "BUILDKITE_PIPELINE_SLUG": "billing"},
			&model.Workload{Provenance: model.ProvClaimed, Platform: "buildkite", Claims: map[string]string{
				"organization_slug": "acme", "pipeline_slug": "billing", "repository": "acme/billing"}}},
		{"marker only", map[string]string{"GITHUB_ACTIONS": "true"}, &model.Workload{Provenance: model.ProvClaimed, Platform: "github"}},
		{"CI alone", map[string]string{"CI": "true"}, nil},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		if got := claimedWorkload(tt.env); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: claimedWorkload = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	// Every variable mapped is one the resolver reads, and every name
	// one that policy knows.
	for _, p := range ciPlatforms {
		for v, claim := range p.vars {
			if _, ok := procfsClaimVars[v]; !ok {
				t.Errorf("%s: %s is not in procfsClaimVars", p.name, v)
			}
			if !slices.Contains(model.WorkloadClaimNames(), claim) {
				t.Errorf("%s: %s maps to %s, not in model.WorkloadClaimNames", p.name, v, claim)
			}
		}
		if _, ok := procfsClaimVars[p.marker]; !ok {
			t.Errorf("%s: marker %s is not in procfsClaimVars", p.name, p.marker)
		}
	}
}

// TestResolveRealWorkload: a real process's token, read from its
// environment, is verified by the real verifier against a test issuer;
// the token never shows in the identity. A bad token gives the claimed
// workload of its CI variables, with the reason.
func TestResolveRealWorkload(t *testing.T) {
	testenv.RequireRoot(t)
	is := oidctest.New(t)
	v, err := oidcjob.New(oidcjob.Options{Config: config.OIDCConfig{
		Issuers: []config.OIDCIssuer{{Issuer: is.URL, Audience: "interlock", Platform: "github"}}}})
	if err != nil {
		t.Fatal(err)
	}
	v.Start()
	t.Cleanup(v.Close)
	if err := v.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	good := is.Sign(t, oidctest.GitHubClaims(is.URL, "interlock", "acme/billing", time.Now().Add(5*time.Minute)))
	expired := is.Sign(t, oidctest.GitHubClaims(is.URL, "interlock", "acme/billing", time.Now().Add(-5*time.Minute)))
	resolve := func(r *Resolver, env []string) model.Identity {
		cmd := identTestStartSleep(t, "", env)
		pid := cmd.Process.Pid
		k := model.KernelFacts{PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
			ConnectBootNS: identTestBootNS(t)}
		return r.Resolve(context.Background(), k)
	}

	r := NewResolver(ResolverOptions{})
	r.SetWorkloadVerifier(v)
	id := resolve(r, []string{"GITHUB_ACTIONS=true", "GITHUB_REPOSITORY=acme/forged", "INTERLOCK_ID_TOKEN=" + good})
	w := id.Workload
	if w == nil || w.Provenance != model.ProvVerified || w.Claims["repository"] != "acme/billing" || w.TokenSource != "INTERLOCK_ID_TOKEN" {
		t.Fatalf("workload = %+v (proc error %q), want verified acme/billing", w, id.ProcError)
	}
	if _, ok := id.Claimed["INTERLOCK_ID_TOKEN"]; ok {
		t.Errorf("the token is among the claims")
	}
	if b, _ := jsonOf(id); strings.Contains(b, good[len(good)-40:]) {
		t.Errorf("the token shows in the identity's JSON")
	}

	id = resolve(r, []string{"GITHUB_ACTIONS=true", "GITHUB_REPOSITORY=acme/forged", "INTERLOCK_ID_TOKEN=" + expired})
	w = id.Workload
	if w == nil || w.Provenance != model.ProvClaimed || w.Claims["repository"] != "acme/forged" || !strings.Contains(w.Error, "expired") {
		t.Errorf("workload with an expired token = %+v, want claimed acme/forged with the reason", w)
	}

	// No verifier: the token variables are not even read.
	r.SetWorkloadVerifier(nil)
	id = resolve(r, []string{"GITHUB_ACTIONS=true", "GITHUB_REPOSITORY=acme/forged", "INTERLOCK_ID_TOKEN=" + good})
	if w := id.Workload; w == nil || w.Provenance != model.ProvClaimed || w.Error != "" || w.Claims["repository"] != "acme/forged" {
		t.Errorf("workload without a verifier = %+v, want claimed", w)
	}
	if id := resolve(r, []string{"PATH=/usr/bin"}); id.Workload != nil {
		t.Errorf("workload of a process without CI variables = %+v, want none", id.Workload)
	}
}

func jsonOf(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
