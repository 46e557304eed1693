package ssh

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/interlock/interlock/inspect"
)

// watchIdle ends the session when no byte crossed the client's connection
// for Session.Idle (limits.timeouts.ssh.idle) and no request waits for a
// decision. Any SSH traffic counts: channel data either way, window
// adjustments, a client's keepalives (ServerAliveInterval keeps a long
// silent command alive). A request held for approval does not: the
// client waits in silence for it, and the approval's own timeout ends the
// wait.
func (c *conn) watchIdle(ctx context.Context, client, up io.Closer) {
	limit := c.s.Idle
	t := time.NewTicker(min(max(limit/8, 50*time.Millisecond), 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.deciding.Load() > 0 {
			// The wait for a decision is not idle time.
			c.lastIO.Store(time.Now().UnixNano())
			continue
		}
		if time.Since(time.Unix(0, c.lastIO.Load())) < limit {
			continue
		}
		c.idled.Store(true)
		c.log.Info("ending an idle ssh session", "idle_for", limit)
		client.Close()
		up.Close()
		return
	}
}

func (c *conn) idleErr() error {
	return fmt.Errorf("%w: no byte from or to the client for %s and no request held (limits.timeouts.ssh.idle)", inspect.ErrIdle, c.s.Idle)
}
