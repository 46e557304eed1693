package journal

import "time"

// setUnsynced sets when the oldest committed but unsynced record was
// handed over (zero: all synced), and publishes it for Stats. During Open
// the writer has no Journal yet; Open syncs before it makes one.
func (w *writer) setUnsynced(t time.Time) {
	w.unsyncedSince = t
	switch {
	case w.j == nil:
	case t.IsZero():
		w.j.unsyncedNanos.Store(0)
	default:
		w.j.unsyncedNanos.Store(t.UnixNano())
	}
}

// unixNanos is the time of n nanoseconds since the epoch; zero for 0.
func unixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
