package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
)

// Client calls the hub's host API.
type Client struct {
	base string
	hc   *http.Client
}

// maxAnswer bounds what is read of one answer: a head or a cosigned
// checkpoint is a few hundred bytes.
const maxAnswer = 1 << 20

// NewClient is a client of the hub at hubURL that proves itself with the
// enrolment's client certificate.
func NewClient(hubURL string, st *State) (*Client, error) {
	tc, err := st.TLSConfig()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute}
	return NewClientHTTP(hubURL, &http.Client{Transport: tr}), nil
}

// NewClientHTTP is a client over hc (tests, or a transport of the
// caller's).
func NewClientHTTP(hubURL string, hc *http.Client) *Client {
	return &Client{base: strings.TrimSuffix(hubURL, "/"), hc: hc}
}

// RefusalError is an answer other than 200: the hub's Refusal when it
// gave one.
type RefusalError struct {
	Status int
	hubapi.Refusal
}

func (e *RefusalError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("ship: hub answered %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("ship: hub refused (%s, %d): %s", e.Code, e.Status, e.Message)
}

// Head asks what the hub holds of this host's journal.
func (c *Client) Head(ctx context.Context) (hubapi.Head, error) {
	var h hubapi.Head
	err := c.call(ctx, http.MethodGet, hubapi.PathHead, nil, &h)
	return h, err
}

// Send posts a batch and returns the hub's cosignature of its checkpoint.
func (c *Client) Send(ctx context.Context, b *hubapi.Batch) (hubapi.BatchResponse, error) {
	var r hubapi.BatchResponse
	err := c.call(ctx, http.MethodPost, hubapi.PathBatches, b, &r)
	return r, err
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("ship: encode %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("ship: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(c.hc, req, out)
}

// do sends req and decodes a 200 answer into out, any other into a
// *RefusalError.
func do(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("ship: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("ship: %s %s: read answer: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		re := &RefusalError{Status: resp.StatusCode}
		if json.Unmarshal(b, &re.Refusal) != nil || re.Message == "" {
			re.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return re
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("ship: %s %s: decode answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// refusalCode is the hub's code of a refusal, "" for any other error.
func refusalCode(err error) string {
	var re *RefusalError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}
