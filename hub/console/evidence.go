package console

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
)

type hostRow struct {
	ID, Name, JournalID  string
	Size, CosignedSize   int64
	Enrolled, LastBatch  string
	Behind               int64
	Link                 string
	Checkpoints, Refused int
}

type evidenceData struct {
	Hosts []hostRow
	Fleet *fleetView
}

type fleetView struct {
	Size      int64
	SignedAt  string
	Published string
	Note      string
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// evidence lists the fleet's hosts, how far each has shipped and what
// the hub cosigned, and the newest fleet checkpoint.
func (c *Console) evidence(w http.ResponseWriter, r *http.Request, s *session) {
	hosts, err := c.opts.Store.Hosts(r.Context())
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	d := evidenceData{}
	for _, h := range hosts {
		d.Hosts = append(d.Hosts, hostRow{ID: h.ID, Name: textview.Escape(h.Name), JournalID: h.JournalID, Size: h.Size,
			CosignedSize: h.CosignedSize, Enrolled: when(h.EnrolledAt), LastBatch: when(h.LastBatchAt),
			Link: c.prefix + "/hosts/" + h.ID + "/evidence"})
	}
	fc, err := c.opts.Store.LatestFleetCheckpoint(r.Context())
	switch {
	case errors.Is(err, store.ErrNoFleetCheckpoint):
	case err != nil:
		c.unavailable(w, r, s, err)
		return
	default:
		d.Fleet = &fleetView{Size: fc.Size, SignedAt: when(fc.SignedAt), Published: when(fc.PublishedAt), Note: textview.EscapeMultiline(string(fc.Note))}
	}
	c.render(w, r, http.StatusOK, "evidence", "Evidence", s, d)
}

type checkpointRow struct {
	Size       int64
	Root       string
	CosignedAt string
	FleetIndex int64
	Verified   bool
	// HostOnly: not cosigned; the host's signature verifies.
	HostOnly bool
	Problem  string
	Note     string
}

type refusalRow struct {
	At, Code, Message string
	From, Entries     int64
	BadSeq            int64
}

type hostEvidenceData struct {
	Host        hostRow
	JournalKey  string
	Checkpoints []checkpointRow
	Refusals    []refusalRow
	HubKey      bool
}

// maxCheckpointRows bounds the checkpoints listed, newest kept.
const maxCheckpointRows = 500

// hostEvidence is one host's evidence: every checkpoint the hub
// accepted, its cosignature checked here against the host's enrolled key
// and the hub's key, and every batch the hub refused, with why.
func (c *Console) hostEvidence(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("host")
	h, err := c.opts.Store.Host(r.Context(), id)
	if errors.Is(err, store.ErrNoHost) {
		c.fail(w, r, s, http.StatusNotFound, "No such host", "The hub has enrolled no host "+textview.Escape(id)+".", "")
		return
	}
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	cps, err := c.opts.Store.Checkpoints(r.Context(), id)
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	refs, err := c.opts.Store.Refusals(r.Context(), id)
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	d := hostEvidenceData{Host: hostRow{ID: h.ID, Name: textview.Escape(h.Name), JournalID: h.JournalID, Size: h.Size,
		CosignedSize: h.CosignedSize, Enrolled: when(h.EnrolledAt), LastBatch: when(h.LastBatchAt), Checkpoints: len(cps), Refused: len(refs)},
		JournalKey: textview.Escape(h.JournalKey)}
	hostKey, errHost := note.NewVerifier(h.JournalKey)
	hubKey, errHub := evidence.NewCosignatureVerifier(c.opts.HubKey)
	d.HubKey = errHub == nil
	if len(cps) > maxCheckpointRows {
		cps = cps[len(cps)-maxCheckpointRows:]
	}
	for i := len(cps) - 1; i >= 0; i-- {
		cp := cps[i]
		row := checkpointRow{Size: cp.Size, Root: hex.EncodeToString(cp.Root), CosignedAt: when(cp.CosignedAt), FleetIndex: cp.FleetIndex,
			Note: textview.EscapeMultiline(string(cp.Cosigned))}
		switch {
		case errHost != nil:
			row.Problem = "the host's enrolled key does not parse"
		case len(cp.Cosigned) == 0:
			// A host's own checkpoint the hub has not cosigned (a
			// host's console): its signature alone is checked.
			got, err := evidence.ParseCheckpoint(cp.Note, hostKey)
			switch {
			case err != nil:
				row.Problem = "does not verify: " + textview.Escape(err.Error())
			case got.Size != cp.Size || !strings.EqualFold(hex.EncodeToString(got.Root[:]), row.Root):
				row.Problem = fmt.Sprintf("the note states size %d, the journal %d", got.Size, cp.Size)
			default:
				row.Verified, row.HostOnly = true, true
			}
			row.Note = textview.EscapeMultiline(string(cp.Note))
		case errHub != nil:
			row.Problem = "not checked: the console was given no hub key"
		default:
			got, _, err := evidence.VerifyCosigned(cp.Cosigned, hostKey, hubKey)
			switch {
			case err != nil:
				row.Problem = "does not verify: " + textview.Escape(err.Error())
			case got.Size != cp.Size || !strings.EqualFold(hex.EncodeToString(got.Root[:]), row.Root):
				row.Problem = fmt.Sprintf("the note states size %d, the store %d", got.Size, cp.Size)
			default:
				row.Verified = true
			}
		}
		d.Checkpoints = append(d.Checkpoints, row)
	}
	for _, rf := range refs {
		d.Refusals = append(d.Refusals, refusalRow{At: when(rf.At), Code: textview.Escape(rf.Code), Message: textview.Escape(rf.Message),
			From: rf.From, Entries: rf.Entries, BadSeq: rf.BadSeq})
	}
	c.render(w, r, http.StatusOK, "host", "Evidence of "+textview.Escape(h.Name), s, d)
}

// export downloads the fleet bundle, the file `interlock hub export`
// writes, for an auditor to verify offline. A failure after the first
// byte aborts the answer, so that a cut bundle is never taken for whole.
func (c *Console) export(w http.ResponseWriter, r *http.Request, s *session) {
	if c.opts.Export == nil {
		c.fail(w, r, s, http.StatusNotFound, "No export", "This hub's console does not serve the fleet bundle.", "Use interlock hub export on the hub.")
		return
	}
	if _, err := c.opts.Store.LatestFleetCheckpoint(r.Context()); errors.Is(err, store.ErrNoFleetCheckpoint) {
		c.fail(w, r, s, http.StatusNotFound, "Nothing to export yet", "The hub has signed no fleet checkpoint yet.", "Wait for the hosts to ship.")
		return
	}
	// Each page of entries moves the write deadline on, as the API's
	// bundle endpoint does: the hub's write timeout does not cut a large
	// bundle, and a stalled reader is still let go.
	rc := http.NewResponseController(w)
	extend := func() error {
		if err := rc.SetWriteDeadline(time.Now().Add(2 * time.Minute)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="fleet-bundle.json.gz"`)
	c.log.Info("console: fleet export", "username", s.who.Username)
	err := extend()
	if err == nil {
		err = c.opts.Export(r.Context(), w, func() error {
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			return extend()
		})
	}
	if err != nil {
		c.log.Error("console: fleet export", "err", err)
		panic(http.ErrAbortHandler)
	}
}
