package kubernetes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

func TestBearerToken(t *testing.T) {
	for _, c := range []struct {
		name   string
		vals   []string
		tok    string
		ok     bool
		errHas string
	}{
		{"none", nil, "", false, ""},
		{"bearer", []string{"Bearer abc.DEF-_~+/="}, "abc.DEF-_~+/=", true, ""},
		{"scheme in lower case", []string{"bearer abc"}, "abc", true, ""},
		{"basic", []string{"Basic YWxpY2U6cHc="}, "", true, `not "Basic"`},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", true, "more than one"},
		{"empty token", []string{"Bearer "}, "", true, "malformed"},
		{"no token", []string{"Bearer"}, "", true, "malformed"},
		{"two words", []string{"Bearer a b"}, "", true, "malformed"},
		{"comma", []string{"Bearer a,Bearer b"}, "", true, "malformed"},
		{"control", []string{"Bearer a\tb"}, "", true, "malformed"},
		{"huge", []string{"Bearer " + strings.Repeat("a", maxToken+1)}, "", true, "malformed"},
	} {
		h := http.Header{}
		for _, v := range c.vals {
			h.Add("Authorization", v)
		}
		tok, ok, err := bearerToken(h)
		if tok != c.tok || ok != c.ok || (c.errHas == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("%s: %q %v %v", c.name, tok, ok, err)
		}
	}
}

func TestRefusedHeader(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	for _, c := range []struct {
		h      http.Header
		pass   bool
		refuse bool
	}{
		{h("Authorization", "Bearer x"), false, true},
		{h("Authorization", "Bearer x"), true, false},
		{h("Authorization", ""), false, true},
		{h("Impersonate-User", "admin", "Authorization", "Bearer x"), true, true},
		{h("impersonate-group", "system:masters"), true, true},
		{h("Sec-WebSocket-Protocol", "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.eHl6"), true, true},
		{h("Sec-WebSocket-Protocol", "v5.channel.k8s.io"), false, false},
	} {
		if got := refusedHeader(c.h, c.pass); (got != "") != c.refuse {
			t.Errorf("%v pass %v: refused %q", c.h, c.pass, got)
		}
	}
}

// TestReviewCache: a review answers for its token for reviewTTL, and the
// cache stays within maxReviews however many tokens come.
func TestReviewCache(t *testing.T) {
	var c reviews
	now := time.Now()
	key := func(i int) (k [32]byte) { copy(k[:], fmt.Sprint(i)); return }
	c.put(key(0), identity{user: "a"}, now)
	if id, ok := c.get(key(0), now.Add(reviewTTL-time.Second)); !ok || id.user != "a" {
		t.Errorf("within the ttl: %v %v", id, ok)
	}
	if _, ok := c.get(key(0), now.Add(reviewTTL)); ok {
		t.Errorf("past the ttl the review still answers")
	}
	for i := 1; i < 3*maxReviews; i++ {
		c.put(key(i), identity{user: "u"}, now)
	}
	if len(c.m) > maxReviews {
		t.Errorf("%d reviews cached", len(c.m))
	}
	if _, ok := c.get(key(3*maxReviews-1), now); !ok {
		t.Errorf("the newest review was dropped")
	}
}

// TestPassBearer: against the real API server, a service account's token
// is let through on a pass_bearer target: the requests are journaled as
// the account, its RBAC applies, an exec runs as it; a bogus token, Basic
// credentials, two Authorization headers, impersonation and a token at
// odds with the client certificate are refused and journaled; the token
// is nowhere in the journal.
func TestPassBearer(t *testing.T) {
	s := serveWith(t, func(k *config.KubernetesConfig) { k.PassBearer = true })
	ctx := context.Background()
	ci, err := s.c.ServiceAccountToken(ctx, "default", "ci")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := s.c.ServiceAccountToken(ctx, "default", "ops")
	if err != nil {
		t.Fatal(err)
	}
	// ops may exec too.
	if _, err := s.c.Client.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ops-dev"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "dev"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ops", Namespace: "default"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	withToken := func(tok string) (*rest.Config, *kubernetes.Clientset) {
		cfg := &rest.Config{Host: s.cfg.Host, Timeout: 20 * time.Second, BearerToken: tok,
			TLSClientConfig: rest.TLSClientConfig{CAData: s.cfg.CAData}}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, cs
	}
	_, ciClient := withToken(ci)
	if _, err := ciClient.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods with ci's token: %v", err)
	}
	// ci may not read configmaps: the API server says so.
	if _, err := ciClient.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "system:serviceaccount:default:ci") {
		t.Errorf("ci listing configmaps: %v", err)
	}
	const ciUser = "system:serviceaccount:default:ci"
	var listed, forbidden bool
	for _, r := range testkit.Data[model.K8sRequest](s.journal, model.KindK8sRequest) {
		if r.User != ciUser {
			continue
		}
		if r.Source != SourceBearer || r.UID == "" || len(r.TokenID) != 16 || !slices.Contains(r.Groups, "system:serviceaccounts") {
			t.Errorf("ci's request journaled as %+v", r)
		}
		listed = listed || r.Resource == "pods" && r.Verb == "list"
		forbidden = forbidden || r.Resource == "configmaps"
	}
	codes := map[int]bool{}
	for _, r := range testkit.Data[model.K8sResponse](s.journal, model.KindK8sResponse) {
		codes[r.Code] = true
	}
	if !listed || !forbidden || !codes[http.StatusForbidden] {
		t.Errorf("listed %v, forbidden %v, codes %v", listed, forbidden, codes)
	}

	// An exec runs upstream as the token's owner.
	opsCfg, _ := withToken(ops)
	u := s.cfg.Host + "/api/v1/namespaces/default/pods/" + kubetest.PodName + "/exec?container=" + kubetest.Container +
		"&stdout=true&command=echo&command=bearer-exec"
	exe, err := remotecommand.NewWebSocketExecutor(opsCfg, "GET", u)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := exe.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "bearer-exec\n" {
		t.Errorf("exec with ops's token: %v %q", err, out.String())
	}
	// ci may not: the API server refuses the stream interlock opens as ci.
	ciCfg, _ := withToken(ci)
	exe, _ = remotecommand.NewWebSocketExecutor(ciCfg, "GET", strings.Replace(u, "bearer-exec", "ci-exec", 1))
	if err := exe.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Errorf("ci's exec ran")
	}
	if n := s.c.Kubelet.ExecCount("ci-exec"); n != 0 {
		t.Errorf("ci's exec ran %d times", n)
	}

	// The refusals, each over a client of its own.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.cfg.CAData)
	alice, err := tls.X509KeyPair(s.cfg.CertData, s.cfg.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	get := func(cert bool, h http.Header) (int, string) {
		tc := &tls.Config{RootCAs: pool}
		if cert {
			tc.Certificates = []tls.Certificate{alice}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
		req, _ := http.NewRequest(http.MethodGet, s.cfg.Host+"/api/v1/namespaces/default/pods", nil)
		req.Header = h
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, c := range []struct {
		name string
		cert bool
		h    http.Header
		code int
		has  string
	}{
		{"bogus token", false, http.Header{"Authorization": {"Bearer bogus.token"}}, 401, "does not accept the bearer token"},
		{"basic", false, http.Header{"Authorization": {"Basic YWRtaW46YWRtaW4="}}, 401, "only a bearer token"},
		{"two tokens", false, http.Header{"Authorization": {"Bearer " + ci, "Bearer " + ops}}, 401, "more than one"},
		{"impersonation", false, http.Header{"Authorization": {"Bearer " + ci}, "Impersonate-User": {"admin"}}, 403, "may not send Impersonate-User"},
		{"certificate and token disagree", true, http.Header{"Authorization": {"Bearer " + ci}}, 403, "name different users"},
	} {
		code, body := get(c.cert, c.h)
		if code != c.code || !strings.Contains(body, c.has) {
			t.Errorf("%s: %d %s", c.name, code, body)
		}
	}
	// The certificate alone is still alice.
	if code, body := get(true, http.Header{}); code != 200 {
		t.Errorf("alice's certificate: %d %s", code, body)
	}
	denied := 0
	for _, r := range testkit.Data[model.K8sRequest](s.journal, model.KindK8sRequest) {
		if r.Decision.Action == model.Deny {
			denied++
		}
	}
	if denied != 5 {
		t.Errorf("%d requests journaled as denied, want 5", denied)
	}

	// Two tokens over one HTTP/2 connection: each request as its own.
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	for _, tok := range []string{ci, ops, ci} {
		req, _ := http.NewRequest(http.MethodGet, s.cfg.Host+"/api/v1/namespaces/default/pods", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := h2.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 || res.StatusCode != 200 {
			t.Fatalf("HTTP/%d %d", res.ProtoMajor, res.StatusCode)
		}
	}
	recs := s.journal.OfKind(model.KindK8sRequest)
	last := recs[len(recs)-3:]
	var users []string
	for _, r := range last {
		users = append(users, r.Data.(model.K8sRequest).User)
		if r.Session != last[0].Session {
			t.Errorf("the requests came over different sessions")
		}
	}
	if want := []string{ciUser, "system:serviceaccount:default:ops", ciUser}; !slices.Equal(users, want) {
		t.Errorf("one connection, two tokens: journaled as %v, want %v", users, want)
	}
	var ids []string
	for _, r := range s.journal.OfSession(last[0].Session) {
		if r.Kind == model.KindK8sIdentity {
			ids = append(ids, r.Data.(model.K8sIdentity).User)
		}
	}
	if len(ids) != 2 {
		t.Errorf("the session's identities: %v", ids)
	}

	// No token, nor its full hash, is anywhere in the journal.
	all, err := json.Marshal(s.journal.Records())
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{ci, ops} {
		if strings.Contains(string(all), tok) || strings.Contains(string(all), tok[len(tok)-40:]) {
			t.Errorf("a token is in the journal")
		}
	}
}

// TestPassBearerUnreachable: a token whose review cannot be made (the API
// server is gone) is refused, never sent on unjudged.
func TestPassBearerUnreachable(t *testing.T) {
	s := serveWith(t, func(k *config.KubernetesConfig) { k.PassBearer = true })
	tok, err := s.c.ServiceAccountToken(context.Background(), "default", "ci")
	if err != nil {
		t.Fatal(err)
	}
	s.c.Stop()
	cfg := &rest.Config{Host: s.cfg.Host, Timeout: 30 * time.Second, BearerToken: tok, TLSClientConfig: rest.TLSClientConfig{CAData: s.cfg.CAData}}
	cs, _ := kubernetes.NewForConfig(cfg)
	_, err = cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if err == nil || !strings.Contains(err.Error(), "identity could not be established") {
		t.Errorf("with the API server gone: %v", err)
	}
	var refused bool
	for _, r := range testkit.Data[model.K8sRequest](s.journal, model.KindK8sRequest) {
		refused = refused || r.Decision.Action == model.Deny && strings.Contains(r.Decision.Reason, "bearer token refused")
	}
	if !refused {
		t.Errorf("the refusal is not journaled")
	}
}

// TestReviewAnswers: what an API server (or something in its place)
// might answer a SelfSubjectReview with; only a well-formed review naming
// an authenticated user is an identity. The real API server cannot be
// made to answer wrongly, so a stand-in answers here.
func TestReviewAnswers(t *testing.T) {
	answer := make(chan func(http.ResponseWriter), 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/authentication.k8s.io/v1/selfsubjectreviews" || r.Header.Get("Authorization") != "Bearer tok" ||
			r.Header.Get("Impersonate-User") != "" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		(<-answer)(w)
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	up, err := newUpstream(config.TargetConfig{Address: strings.TrimPrefix(srv.URL, "https://"),
		Kubernetes: &config.KubernetesConfig{CAFile: caFile, TokenFile: "/etc/hostname", PassBearer: true}})
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{upstream: up}
	reply := func(code int, ctype, body string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	const ok = `{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","status":{"userInfo":{"username":"ci","uid":"u1","groups":["g"]}}}`
	for _, c := range []struct {
		name   string
		answer func(http.ResponseWriter)
		user   string
	}{
		{"a review", reply(201, "application/json", ok), "ci"},
		{"unauthorized", reply(401, "application/json", `{"kind":"Status"}`), ""},
		{"server error", reply(500, "application/json", ok), ""},
		{"html", reply(201, "text/html", ok), ""},
		{"two objects", reply(201, "application/json", ok+ok), ""},
		{"another kind", reply(201, "application/json", strings.Replace(ok, `"SelfSubjectReview"`, `"TokenReview"`, 1)), ""},
		{"no user", reply(201, "application/json", strings.Replace(ok, `"ci"`, `""`, 1)), ""},
		{"anonymous", reply(201, "application/json", strings.Replace(ok, `"ci"`, `"system:anonymous"`, 1)), ""},
		{"unauthenticated group", reply(201, "application/json", strings.Replace(ok, `["g"]`, `["system:unauthenticated"]`, 1)), ""},
		{"truncated", reply(201, "application/json", ok[:40]), ""},
		{"huge", reply(201, "application/json", `{"kind":"`+strings.Repeat("x", 2<<20)+`"}`), ""},
	} {
		answer <- c.answer
		id, err := tg.review(context.Background(), "tok")
		if id.user != c.user || (c.user == "") != (err != nil) {
			t.Errorf("%s: %+v %v", c.name, id, err)
		}
		if c.name == "unauthorized" && !errors.Is(err, errUnauthorized) {
			t.Errorf("a 401 is not told apart: %v", err)
		}
	}
}
