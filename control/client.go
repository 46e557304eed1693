// Package control is the client of interlock's local API: it asks a
// daemon for its status and to intercept an `interlock run`'s cgroup, and
// lists and decides held operations on an approvals socket. It speaks the
// wire types of control/controlapi only, so a program that only talks to
// a daemon links no engine, kernel side or journal storage; the server is
// control/server.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/model"
)

// Client talks to a daemon's control socket.
type Client struct {
	path string
	http *http.Client
}

// Dial returns a client if a daemon answers on the socket within the
// timeout, and an error otherwise.
func Dial(ctx context.Context, path string, timeout time.Duration) (*Client, error) {
	c := newClient(path)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := c.Status(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func newClient(path string) *Client {
	return &Client{
		path: path,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}},
	}
}

// StatusError is a refusal from the daemon: the HTTP status it answered
// with and its message.
type StatusError struct {
	Code    int
	Status  string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("interlock daemon: %s: %s", e.Status, e.Message)
}

// HasStatus reports whether err is the daemon's answer with HTTP status
// code.
func HasStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("interlock daemon: encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://interlock"+path, rd)
	if err != nil {
		return fmt.Errorf("interlock daemon: %s %s: %w", method, path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("interlock daemon at %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &StatusError{Code: resp.StatusCode, Status: resp.Status, Message: string(bytes.TrimSpace(msg))}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("interlock daemon: bad answer: %w", err)
	}
	return nil
}

// Status asks the daemon for its status.
func (c *Client) Status(ctx context.Context) (controlapi.Status, error) {
	var st controlapi.Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// StartRun asks the daemon to intercept a cgroup. argv is sent with its
// secrets' values replaced: the daemon journals it.
func (c *Client) StartRun(ctx context.Context, cgroup string, argv []string) (controlapi.RunInfo, error) {
	var ri controlapi.RunInfo
	argv, n := argvredact.Argv(argv)
	err := c.do(ctx, http.MethodPost, "/v1/runs", controlapi.RunRequest{Cgroup: cgroup, Argv: argv, ArgvRedacted: n}, &ri)
	return ri, err
}

// EndRun tells the daemon the run is over; it journals the result,
// detaches the cgroup and returns the run's tally.
func (c *Client) EndRun(ctx context.Context, id string, res model.RunEnd) (controlapi.Tally, error) {
	var t controlapi.Tally
	if id == "" {
		return t, errors.New("no run id")
	}
	err := c.do(ctx, http.MethodPost, "/v1/runs/"+id+"/end", res, &t)
	return t, err
}
