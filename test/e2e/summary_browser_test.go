package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/browsertest"
)

// principalJournal writes a journal through the real writer with one
// session for each kind of principal the summary must show: a person who
// became root through sudo, a verified CI job, a job whose token was
// refused (its claims left as the environment's word, one of them
// posing as verified), and an agent.
func principalJournal(t *testing.T, path string) {
	t.Helper()
	j, err := journal.Open(context.Background(), journal.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	login, audit := uint32(1000), uint32(42)
	long := "/home/alice/.local/share/very/long/path/to/a/toolchain/bin/" + strings.Repeat("psql-wrapper-", 6) + "psql"
	ids := map[string]model.Identity{
		"human-sudo": {Human: &model.Human{LoginUID: &login, LoginUser: "alice", SessionID: &audit, Provenance: model.ProvProc,
			KeyFingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
			Chain:          []model.UserHop{{PID: 4100, Via: "sudo", FromUID: 1000, FromUser: "alice", ToUID: 0, ToUser: "root"}}}},
		"ci-verified": {Human: &model.Human{NoLogin: true, Provenance: model.ProvProc},
			Workload: &model.Workload{Provenance: model.ProvVerified, Platform: "github", Issuer: "https://token.actions.githubusercontent.com",
				Subject: "repo:acme/billing:ref:refs/heads/main", TokenSource: "ACTIONS_ID_TOKEN_REQUEST_URL",
				Claims: map[string]string{"repository": "acme/billing", "ref": "refs/heads/main", "workflow": "deploy", "run_id": "912345678", "actor": "bob"}}},
		"ci-claimed": {Human: &model.Human{NoLogin: true, Provenance: model.ProvProc},
			Workload: &model.Workload{Provenance: model.ProvClaimed, Platform: "github", TokenSource: "INTERLOCK_OIDC_TOKEN",
				Error:  "token signature does not verify with the issuer's keys <script>alert(1)</script>",
				Claims: map[string]string{"repository": "acme/billing (verified)", "ref": "refs/heads/main", "run_id": "1"}}},
		"agent": {Human: &model.Human{LoginUID: &login, LoginUser: "alice", SessionID: &audit, Provenance: model.ProvProc},
			Agent: &model.Agent{Name: "claude-code", PID: 5150, Exe: "/usr/local/bin/claude", ExeSHA256: strings.Repeat("ab", 32), MatchedBy: "exe", Provenance: model.ProvProc}},
	}
	closeErr := map[string]string{"ci-claimed": "upstream: read tcp 127.0.0.1:41002->10.20.30.40:5432: connection reset by peer"}
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	for i, id := range []string{"human-sudo", "ci-verified", "ci-claimed", "agent"} {
		ident := ids[id]
		ident.Kernel = model.KernelFacts{TGID: uint32(3000 + i), UID: 0, Comm: "psql"}
		ident.Proc = &model.ProcFacts{Exe: long, ExeSHA256: strings.Repeat("cd", 32), User: "root", SystemdUnit: "session-42.scope"}
		open := model.SessionOpen{
			Target: model.Target{Name: "billing-db", Protocol: model.ProtoPostgres}, Identity: ident,
			OrigDst: netip.MustParseAddrPort("10.20.30.40:5432"), Client: netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 41000+i)),
			Decision: model.Decision{Action: model.Allow, Rule: "billing-read"},
		}
		for _, r := range []model.Record{
			{Kind: model.KindSessionOpen, Session: id, Time: at, Data: open},
			{Kind: model.KindPGStatement, Session: id, Time: at.Add(time.Second), Data: model.PGStatement{SQL: "SELECT 1", Kinds: []string{"select"}, ReadOnly: true,
				Decision: model.Decision{Action: model.Allow, Rule: "billing-read"}}},
			{Kind: model.KindSessionClose, Session: id, Time: at.Add(2 * time.Second), Data: model.SessionClose{BytesUp: 120, BytesDown: 4096, DurationNS: int64(2 * time.Second), Error: closeErr[id]}},
		} {
			if _, err := j.Append(context.Background(), r, model.Committed); err != nil {
				t.Fatal(err)
			}
		}
		at = at.Add(time.Minute)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSummaryInBrowser opens the summary.html that `interlock journal
// export` writes in headless Chromium at 1280x900 and reads from the DOM
// that each principal is shown with its provenance (a verified badge only
// on the verified workload; the refused token's error; the claimed values
// labelled), that the client's markup stayed text, and that the sessions
// table fits the viewport or scrolls inside its own container. It keeps a
// full-page screenshot.
func TestSummaryInBrowser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	principalJournal(t, path)
	bundle := filepath.Join(dir, "bundle.tar.gz")
	if _, serr, code := runCmd(t, exec.Command(interlockBin, "journal", "export", "-j", path, "--key", filepath.Join(dir, journal.KeyFile), "-q", "--out", bundle)); code != 0 {
		t.Fatalf("journal export: exit %d: %s", code, serr)
	}
	page := filepath.Join(dir, "summary.html")
	if err := os.WriteFile(page, testkit.ReadTarGz(t, bundle)[evidence.FileSummary], 0o644); err != nil {
		t.Fatal(err)
	}

	ctx := browsertest.Chrome(t, 1280, 900, time.Minute)

	type principalRow struct {
		Session, Human, Workload, Agent string
		Badges                          []string
	}
	type domFacts struct {
		Viewport, DocWidth         int
		TableWidth, ContainerWidth int
		ContainerOverflow          string
		Rows                       []principalRow
		IdentityBadges             []string
		Scripts                    int
	}
	const read = `(() => {
	const t = document.getElementById('sessions');
	const box = t.parentElement;
	const cell = (tr, c) => { const td = tr.querySelector('td.' + c); return td ? td.innerText : ''; };
	const rows = [...t.querySelectorAll('tr[data-session]')].map(tr => ({
		Session: tr.dataset.session, Human: cell(tr, 'human'), Workload: cell(tr, 'workload'), Agent: cell(tr, 'agent'),
		Badges: [...tr.querySelectorAll('[data-provenance]')].map(b => b.dataset.provenance + ':' + b.innerText + ':' + getComputedStyle(b).backgroundColor),
	}));
	return {
		Viewport: window.innerWidth, DocWidth: document.documentElement.scrollWidth,
		TableWidth: t.scrollWidth, ContainerWidth: box.clientWidth, ContainerOverflow: getComputedStyle(box).overflowX,
		Rows: rows,
		IdentityBadges: [...document.querySelectorAll('#identities [data-provenance]')].map(b => b.dataset.provenance),
		Scripts: document.querySelectorAll('script').length,
	};
})()`
	shot := filepath.Join(browsertest.ArtifactsDir(t), "summary-1280.png")
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitReady(chromedp.CSS("#sessions"))); err != nil {
		t.Fatalf("chromium: load %s: %v", page, err)
	}
	dom, err := chromedp.Run(ctx, chromedp.Evaluate[domFacts](read))
	if err != nil {
		t.Fatalf("chromium: read the page: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	js, _ := json.MarshalIndent(dom, "", " ")
	t.Logf("DOM: %s", js)

	if dom.Scripts != 0 {
		t.Errorf("the page holds %d script elements: the client's markup became markup", dom.Scripts)
	}
	rows := map[string]principalRow{}
	for _, r := range dom.Rows {
		rows[r.Session] = r
	}
	if len(rows) != 4 {
		t.Fatalf("%d session rows, want 4", len(rows))
	}
	verified := "verified:verified:"
	has := func(id, what, text string) {
		t.Helper()
		if !strings.Contains(text, what) {
			t.Errorf("session %s: %q not shown in %q", id, what, text)
		}
	}
	r := rows["human-sudo"]
	has(r.Session, "alice", r.Human)
	has(r.Session, "login uid 1000 · session 42", r.Human)
	has(r.Session, "alice → root via sudo", r.Human)
	has(r.Session, "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", r.Human)
	has(r.Session, "none", r.Workload)
	r = rows["ci-verified"]
	has(r.Session, "no login", r.Human)
	has(r.Session, "acme/billing@refs/heads/main", r.Workload)
	has(r.Session, "issuer https://token.actions.githubusercontent.com", r.Workload)
	has(r.Session, "run_id=912345678", r.Workload)
	if len(r.Badges) != 1 || !strings.HasPrefix(r.Badges[0], verified) {
		t.Errorf("the verified workload's badges: %q", r.Badges)
	}
	r = rows["ci-claimed"]
	has(r.Session, `"acme/billing (verified)@refs/heads/main"`, r.Workload)
	has(r.Session, "claimed by the process:", r.Workload)
	has(r.Session, "token refused: token signature does not verify with the issuer's keys <script>alert(1)</script>", r.Workload)
	if len(r.Badges) != 1 || !strings.HasPrefix(r.Badges[0], "claimed:claimed:") {
		t.Errorf("the claimed workload's badges: %q", r.Badges)
	}
	// The badges must look different, not only be named differently.
	if v, c := rows["ci-verified"].Badges, r.Badges; len(v) == 1 && len(c) == 1 && v[0][strings.LastIndex(v[0], ":"):] == c[0][strings.LastIndex(c[0], ":"):] {
		t.Errorf("verified and claimed badges have the same colour: %q %q", v, c)
	}
	r = rows["agent"]
	has(r.Session, "claude-code", r.Agent)
	has(r.Session, "matched by exe, pid 5150 /usr/local/bin/claude", r.Agent)
	has(r.Session, "alice", r.Human)
	for id, r := range rows {
		if id != "ci-verified" {
			for _, b := range r.Badges {
				if strings.HasPrefix(b, verified) {
					t.Errorf("session %s shows a verified badge: %q", id, r.Badges)
				}
			}
		}
	}
	if n := strings.Count(strings.Join(dom.IdentityBadges, " "), "verified"); n != 1 {
		t.Errorf("identities table: %d verified badges, want 1: %q", n, dom.IdentityBadges)
	}

	// At 1280 px nothing is cut off: the page does not scroll sideways,
	// and the sessions table either fits its container or the container
	// scrolls.
	if dom.Viewport > 1280 || dom.Viewport < 1200 {
		t.Errorf("viewport %d px wide, want about 1280", dom.Viewport)
	}
	if dom.DocWidth > dom.Viewport {
		t.Errorf("the page is %d px wide in a %d px viewport", dom.DocWidth, dom.Viewport)
	}
	if dom.TableWidth > dom.ContainerWidth && dom.ContainerOverflow != "auto" && dom.ContainerOverflow != "scroll" {
		t.Errorf("the sessions table is %d px wide in a %d px container that does not scroll (overflow-x %s)",
			dom.TableWidth, dom.ContainerWidth, dom.ContainerOverflow)
	}
}

// TestSessionsListPrincipals runs `interlock sessions list` on the same
// journal: the table names each principal with the workload's
// provenance, and --json carries the structs whole.
func TestSessionsListPrincipals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	principalJournal(t, path)
	out, serr, code := runCmd(t, exec.Command(interlockBin, "sessions", "list", "-j", path))
	if code != 0 {
		t.Fatalf("sessions list: exit %d: %s", code, serr)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 {
			rows[f[2]] = l
		}
	}
	for id, wants := range map[string][]string{
		"human-sudo":  {" alice "},
		"ci-verified": {" no login ", " acme/billing@refs/heads/main (verified) "},
		"ci-claimed":  {` "acme/billing (verified)@refs/heads/main" (claimed, token refused) `},
		"agent":       {" alice ", " claude-code "},
	} {
		for _, w := range wants {
			if !strings.Contains(rows[id], w) {
				t.Errorf("session %s: row lacks %q:\n%s", id, w, out)
			}
		}
	}
	out, serr, code = runCmd(t, exec.Command(interlockBin, "sessions", "list", "-j", path, "--json"))
	if code != 0 {
		t.Fatalf("sessions list --json: exit %d: %s", code, serr)
	}
	var list []journal.SessionSummary
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 4 {
		t.Fatalf("sessions list --json: %v\n%s", err, out)
	}
	for _, s := range list {
		switch s.ID {
		case "human-sudo":
			if s.Human == nil || len(s.Human.Chain) != 1 || s.Human.Chain[0].ToUser != "root" || s.Human.SessionID == nil || *s.Human.SessionID != 42 {
				t.Errorf("human-sudo: human %+v", s.Human)
			}
		case "ci-claimed":
			if s.Workload == nil || s.Workload.Provenance != model.ProvClaimed || !strings.Contains(s.Workload.Error, "<script>") {
				t.Errorf("ci-claimed: workload %+v", s.Workload)
			}
		case "agent":
			if s.Agent == nil || s.Agent.PID != 5150 || s.Agent.ExeSHA256 == "" {
				t.Errorf("agent: agent %+v", s.Agent)
			}
		}
	}
}
