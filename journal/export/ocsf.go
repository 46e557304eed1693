package export

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// OCSF classes written (OCSF 1.3.0).
const (
	ocsfVersion       = "1.3.0"
	classAuth         = 3002 // Authentication, category 3 Identity & Access Management
	classSSH          = 4007 // SSH Activity, category 4 Network Activity
	classDatastore    = 6005 // Datastore Activity, category 6 Application Activity
	classAPI          = 6003 // API Activity, category 6 Application Activity
	statusSuccess     = 1
	statusFailure     = 2
	severityInfo      = 1
	severityMedium    = 3
	activityLogon     = 1
	activityLogoff    = 2
	sshOpen           = 1
	sshClose          = 2
	sshRefuse         = 5
	sshTraffic        = 6
	datastoreRead     = 1
	datastoreUpdate   = 2
	datastoreQuery    = 4
	datastoreWrite    = 5
	datastoreCreate   = 6
	datastoreDelete   = 7
	datastoreOther    = 99
	categoryIAM       = 3
	categoryNetwork   = 4
	categoryApplicate = 6
)

// OCSFOptions configure OCSF.
type OCSFOptions struct {
	Journal   string
	Selection journal.Selection
	Progress  func(done, total int64)
}

// OCSF writes the selected entries as OCSF events, one JSON object per
// line, for a SIEM: session opens and closes as Authentication (3002),
// ssh.* entries as SSH Activity (4007), pg.statement entries as Datastore
// Activity (6005), k8s.request and k8s.response entries as API Activity
// (6003). Other entries have no OCSF class and are skipped; the
// bundle is the complete evidence. Each event names its entry
// (unmapped.interlock.seq) so a finding can be traced back. It returns the
// number of events written.
func OCSF(ctx context.Context, w io.Writer, opts OCSFOptions) (int64, error) {
	snap, err := journal.OpenSnapshot(ctx, opts.Journal)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	first, last, found, err := snap.SelectRange(opts.Selection, snap.Head)
	if err != nil || !found {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	st := &ocsfState{opens: map[string]*model.SessionOpen{}, k8s: map[string]map[uint64]*model.K8sRequest{}}
	var n, done int64
	total := last - first + 1
	err = snap.Entries(first, last, func(e journal.Entry) error {
		done++
		if done%16384 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if opts.Progress != nil {
				opts.Progress(done, total)
			}
		}
		if !opts.Selection.Matches(e.TimeNS, e.Session) {
			return nil
		}
		p, err := evidence.ParseBody(e.Body)
		if err != nil {
			return fmt.Errorf("export: entry %d does not parse (run `interlock journal verify`): %w", e.Seq, err)
		}
		ev := ocsfEvent(snap.JournalID, e.Seq, p, st)
		if ev == nil {
			return nil
		}
		n++
		return enc.Encode(ev)
	})
	if err != nil {
		return n, err
	}
	if opts.Progress != nil {
		opts.Progress(done, total)
	}
	return n, bw.Flush()
}

type obj = map[string]any

// ocsfState is what later entries of a session need of earlier ones: its
// session.open (who), and its kubernetes requests not answered yet (a
// response names what it answered).
type ocsfState struct {
	opens map[string]*model.SessionOpen
	k8s   map[string]map[uint64]*model.K8sRequest
}

func ocsfEvent(journalID string, seq uint64, p evidence.Body, st *ocsfState) obj {
	opens := st.opens
	base := func(class, category, activity int, className, activityName string) obj {
		return obj{
			"class_uid": class, "class_name": className, "category_uid": category,
			"activity_id": activity, "activity_name": activityName, "type_uid": class*100 + activity,
			"time": p.Time / 1e6, "severity_id": severityInfo, "status_id": statusSuccess,
			"metadata": obj{
				"version": ocsfVersion, "uid": journalID + ":" + strconv.FormatUint(seq, 10),
				"product":     obj{"name": "Interlock", "vendor_name": "Interlock"},
				"logged_time": p.Time / 1e6,
			},
			"unmapped": obj{"interlock": obj{"journal_id": journalID, "seq": seq, "kind": p.Kind, "session": p.Session, "time_ns": p.Time}},
		}
	}
	withSession := func(ev obj) obj {
		if o := opens[p.Session]; o != nil {
			addActor(ev, o)
		}
		return ev
	}
	decided := func(ev obj, d model.Decision) {
		if d.Action == model.Deny {
			ev["status_id"], ev["severity_id"], ev["status_detail"] = statusFailure, severityMedium, "denied by rule "+d.Rule+": "+d.Reason
		}
		if d.Rule != "" {
			ev["policy"] = obj{"name": d.Rule, "desc": d.Reason}
		}
	}
	switch p.Kind {
	case model.KindSessionOpen:
		var o model.SessionOpen
		if json.Unmarshal(p.Data, &o) != nil {
			return nil
		}
		opens[p.Session] = &o
		ev := base(classAuth, categoryIAM, activityLogon, "Authentication", "Logon")
		addActor(ev, &o)
		ev["service"] = obj{"name": o.Target.Name}
		decided(ev, o.Decision)
		return ev
	case model.KindSessionClose:
		o := opens[p.Session]
		delete(opens, p.Session)
		delete(st.k8s, p.Session)
		ev := base(classAuth, categoryIAM, activityLogoff, "Authentication", "Logoff")
		if o != nil {
			addActor(ev, o)
		}
		var c model.SessionClose
		if json.Unmarshal(p.Data, &c) == nil {
			ev["duration"] = c.DurationNS / 1e6
			if c.Error != "" {
				ev["status_detail"] = c.Error
			}
		}
		return ev
	case model.KindPGStatement:
		var st model.PGStatement
		if json.Unmarshal(p.Data, &st) != nil {
			return nil
		}
		id, name := datastoreActivity(st.Kinds)
		ev := withSession(base(classDatastore, categoryApplicate, id, "Datastore Activity", name))
		ev["query_info"] = obj{"query_string": st.SQL, "uid": strconv.FormatUint(seq, 10)}
		ev["type_id"] = 1 // database
		if o := opens[p.Session]; o != nil && o.Postgres != nil {
			ev["database"] = obj{"name": o.Postgres.Database, "type_id": 99, "type": "PostgreSQL"}
		}
		decided(ev, st.Decision)
		return ev
	case model.KindSSHChannel, model.KindSSHRequest, model.KindSSHExit, model.KindSSHSFTP:
		activity, name := sshTraffic, "Traffic"
		var d model.Decision
		detail := ""
		switch p.Kind {
		case model.KindSSHChannel:
			var c model.SSHChannel
			if json.Unmarshal(p.Data, &c) != nil {
				return nil
			}
			activity, name, d, detail = sshOpen, "Open", c.Decision, "channel "+c.Type+" "+c.Detail
		case model.KindSSHRequest:
			var r model.SSHRequest
			if json.Unmarshal(p.Data, &r) != nil {
				return nil
			}
			d, detail = r.Decision, strings.TrimSpace(r.Type+" "+r.Command)
		case model.KindSSHExit:
			activity, name, detail = sshClose, "Close", "channel exit"
		case model.KindSSHSFTP:
			var f model.SSHSFTP
			if json.Unmarshal(p.Data, &f) != nil {
				return nil
			}
			d, detail = f.Decision, "sftp "+f.Op+" "+f.Path
		}
		if d.Action == model.Deny {
			activity, name = sshRefuse, "Refuse"
		}
		ev := withSession(base(classSSH, categoryNetwork, activity, "SSH Activity", name))
		ev["message"] = detail
		decided(ev, d)
		return ev
	case model.KindK8sRequest, model.KindK8sResponse:
		return k8sEvent(p, st, withSession(base(classAPI, categoryApplicate, apiUnknown, "API Activity", "Unknown")), decided)
	}
	return nil
}

func datastoreActivity(kinds []string) (int, string) {
	id := datastoreOther
	for _, k := range kinds {
		next := datastoreOther
		switch {
		case k == "select" || k == "show" || k == "explain":
			next = datastoreQuery
		case k == "insert" || k == "copy_from":
			next = datastoreWrite
		case k == "update":
			next = datastoreUpdate
		case k == "delete" || k == "truncate" || strings.HasPrefix(k, "drop"):
			next = datastoreDelete
		case strings.HasPrefix(k, "create"):
			next = datastoreCreate
		case k == "copy_to":
			next = datastoreRead
		}
		// A statement that also changes data is reported by the change.
		if id == datastoreOther || id == datastoreQuery || id == datastoreRead {
			id = next
		}
	}
	names := map[int]string{datastoreRead: "Read", datastoreUpdate: "Update", datastoreQuery: "Query", datastoreWrite: "Write",
		datastoreCreate: "Create", datastoreDelete: "Delete", datastoreOther: "Other"}
	return id, names[id]
}

// addActor names who is behind a session's events. actor.user is the
// person who logged in when the journal knows one (the audit login uid,
// which the process cannot change), else the process's own user as
// before; the process's user is always actor.process.user, and the
// top-level user (the account that connected) stays the process's.
// actor.session is the audit login session, actor.app_name the agent,
// actor.idp the issuer of a verified workload token. Everything else of
// the principals (the sudo chain, the claims and their provenance, a
// refused token's error) has no OCSF attribute and is in
// unmapped.interlock as the journal recorded it.
func addActor(ev obj, o *model.SessionOpen) {
	k := o.Identity.Kernel
	user := obj{"uid": strconv.FormatUint(uint64(k.UID), 10)}
	proc := obj{"pid": k.TGID, "name": k.Comm}
	if pr := o.Identity.Proc; pr != nil {
		if pr.User != "" {
			user["name"] = pr.User
		}
		file := obj{"path": pr.Exe}
		if pr.ExeSHA256 != "" {
			file["hashes"] = []obj{{"algorithm_id": 3, "algorithm": "SHA-256", "value": pr.ExeSHA256}}
		}
		proc["file"] = file
		proc["cmd_line"] = strings.Join(pr.Cmdline, " ")
	}
	proc["user"] = user
	actor := obj{"user": user, "process": proc}
	id := o.Identity
	if h := id.Human; h != nil && !h.NoLogin && h.LoginUID != nil {
		login := obj{"uid": strconv.FormatUint(uint64(*h.LoginUID), 10)}
		if h.LoginUser != "" {
			login["name"] = h.LoginUser
		}
		actor["user"] = login
		if h.SessionID != nil {
			sess := obj{"uid": strconv.FormatUint(uint64(*h.SessionID), 10)}
			if c := cmp.Or(h.KeyFingerprint, h.KeyID); c != "" {
				sess["credential_uid"] = c
			}
			actor["session"] = sess
		}
	}
	if a := id.Agent; a != nil {
		actor["app_name"] = a.Name
	}
	if w := id.Workload; w != nil && w.Provenance == model.ProvVerified {
		actor["idp"] = obj{"name": cmp.Or(w.Platform, w.Issuer), "uid": w.Issuer}
	}
	ev["actor"] = actor
	ev["user"] = user
	ev["src_endpoint"] = obj{"ip": o.Client.Addr().String(), "port": o.Client.Port()}
	ev["dst_endpoint"] = obj{"ip": o.OrigDst.Addr().String(), "port": o.OrigDst.Port(), "name": o.Target.Name}
	il := ev["unmapped"].(obj)["interlock"].(obj)
	if id.Human != nil {
		il["human"] = id.Human
	}
	if id.Workload != nil {
		il["workload"] = id.Workload
	}
	if id.Agent != nil {
		il["agent"] = id.Agent
	}
}
