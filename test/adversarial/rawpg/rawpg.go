// Package rawpg is the adversarial suite's raw PostgreSQL client: it
// writes frontend messages exactly as a case lists them, all of one batch
// in a single write (so pipelined messages reach interlock together), and
// reads everything the backend answers until the expected number of
// ReadyForQuery messages, the end of the connection, or a timeout.
//
// It is used in two places: inside the intercepted cgroup by the
// advclient program (connecting without a password, as every intercepted
// client does), and in the test process itself for control runs that
// speak to PostgreSQL directly (connecting with pgconn, then taking the
// connection over).
package rawpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Msg is one frontend message, as a case writes it.
type Msg struct {
	// T is the message: Q (Query), P (Parse), B (Bind), E (Execute),
	// D (Describe), C (Close), S (Sync), H (Flush), F (FunctionCall),
	// d (CopyData), c (CopyDone), f (CopyFail), X (Terminate), raw (Data
	// written as is).
	T string `json:"t"`
	// SQL is the query text of Q and P; Raw, when set, replaces it with
	// arbitrary bytes (not UTF-8).
	SQL string `json:"sql,omitempty"`
	Raw []byte `json:"raw,omitempty"`
	// Name is the statement name of P, the source statement of B, and the
	// object of D and C (with Kind S or P).
	Name   string `json:"name,omitempty"`
	Portal string `json:"portal,omitempty"`
	Kind   string `json:"kind,omitempty"`
	// Types are Parse's parameter type OIDs.
	Types []uint32 `json:"types,omitempty"`
	// Params are Bind's parameter values (nil is NULL); GenParams, when
	// set, binds that many text parameters "1", "2", ... instead.
	Params       []*string `json:"params,omitempty"`
	BinParams    [][]byte  `json:"bin_params,omitempty"`
	GenParams    int       `json:"gen_params,omitempty"`
	ParamFormats []int16   `json:"param_formats,omitempty"`
	ResultFormat []int16   `json:"result_formats,omitempty"`
	// MaxRows is Execute's row limit (0: all).
	MaxRows uint32 `json:"max_rows,omitempty"`
	// Function is FunctionCall's function OID.
	Function uint32 `json:"function,omitempty"`
	// Data is CopyData's payload, or the bytes of a raw message.
	Data []byte `json:"data,omitempty"`
	// OnCopyIn holds this message and the rest of the batch back until
	// the server's CopyInResponse (as psql sends COPY data); without it
	// the whole batch goes in one write.
	OnCopyIn bool `json:"on_copy_in,omitempty"`
}

// Back is one backend message, reduced to what the checks read.
type Back struct {
	// T is the message type byte: E error, N notice, C CommandComplete,
	// Z ReadyForQuery, T RowDescription, D DataRow, 1 ParseComplete,
	// 2 BindComplete, 3 CloseComplete, n NoData, s PortalSuspended,
	// S ParameterStatus, K BackendKeyData, t ParameterDescription,
	// G CopyInResponse, H CopyOutResponse, I EmptyQueryResponse,
	// A NotificationResponse, V FunctionCallResponse, d CopyData, c CopyDone,
	// R authentication, v NegotiateProtocolVersion.
	T        string    `json:"t"`
	Severity string    `json:"severity,omitempty"`
	Code     string    `json:"code,omitempty"`
	Message  string    `json:"message,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Tag      string    `json:"tag,omitempty"`
	Status   string    `json:"status,omitempty"`
	Name     string    `json:"name,omitempty"`
	Value    string    `json:"value,omitempty"`
	Fields   []Field   `json:"fields,omitempty"`
	Values   []*string `json:"values,omitempty"`
	PID      uint32    `json:"pid,omitempty"`
	// Raw is the whole message as received, for ErrorResponse and
	// NoticeResponse: every field (hint, context, schema, table, column,
	// constraint, ...), not only those above.
	Raw []byte `json:"raw,omitempty"`
}

// Field is one column of a RowDescription.
type Field struct {
	Name     string `json:"name"`
	TableOID uint32 `json:"table_oid,omitempty"`
	Column   uint16 `json:"column,omitempty"`
	TypeOID  uint32 `json:"type_oid"`
	Format   int16  `json:"format,omitempty"`
}

// Reply is what one batch got back.
type Reply struct {
	Msgs []Back `json:"msgs"`
	// Closed says the backend closed the connection.
	Closed bool `json:"closed,omitempty"`
	// Err is a client-side failure (timeout, connection error).
	Err string `json:"err,omitempty"`
}

// Errors returns the ErrorResponses of the reply.
func (r Reply) Errors() []Back {
	var out []Back
	for _, m := range r.Msgs {
		if m.T == "E" {
			out = append(out, m)
		}
	}
	return out
}

// Conn is one raw session.
type Conn struct {
	nc net.Conn
	fe *pgproto3.Frontend
	// PID is the backend pid the session was given (BackendKeyData).
	PID uint32
	// Params are the ParameterStatus values seen at login.
	Params map[string]string
	// copyAnswered: the batch being read carries its own COPY data, so a
	// CopyInResponse is not answered with a CopyFail; held is the part of
	// it sent when the CopyInResponse comes.
	copyAnswered bool
	held         []byte
}

// Dial opens a session without a password, the way an intercepted client
// does (interlock authenticates the process, not a password). params are
// the StartupMessage's parameters (user and database included).
func Dial(addr string, params map[string]string, timeout time.Duration) (*Conn, Reply, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, Reply{}, err
	}
	c := &Conn{nc: nc, fe: pgproto3.NewFrontend(nc, nc), Params: map[string]string{}}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	if err := c.fe.Flush(); err != nil {
		nc.Close()
		return nil, Reply{}, err
	}
	r := c.read(1, timeout)
	for _, m := range r.Msgs {
		switch m.T {
		case "K":
			c.PID = m.PID
		case "S":
			c.Params[m.Name] = m.Value
		case "R":
			if m.Status != "ok" {
				nc.Close()
				return nil, r, fmt.Errorf("the server asked for a password (%s): the connection was not intercepted", m.Status)
			}
		}
	}
	if r.Err != "" || r.Closed || len(r.Errors()) > 0 {
		nc.Close()
		return nil, r, fmt.Errorf("login failed: %+v", r)
	}
	return c, r, nil
}

// DialPassword opens a session directly to PostgreSQL with a password
// (control runs), then takes the connection over.
func DialPassword(ctx context.Context, connString string, params map[string]string) (*Conn, error) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		return nil, err
	}
	return &Conn{nc: hc.Conn, fe: hc.Frontend, PID: hc.PID, Params: hc.ParameterStatuses}, nil
}

// Close ends the session with a Terminate.
func (c *Conn) Close() {
	c.fe.Send(&pgproto3.Terminate{})
	c.fe.Flush()
	c.nc.Close()
}

// Expected counts the ReadyForQuery messages a batch should bring: one per
// Query, Sync and FunctionCall.
func Expected(msgs []Msg) int {
	n := 0
	for _, m := range msgs {
		switch m.T {
		case "Q", "S", "F":
			n++
		}
	}
	return n
}

// Exchange writes the batch in one write and reads the answers. ready is
// the number of ReadyForQuery messages to wait for (Expected when < 0).
func (c *Conn) Exchange(msgs []Msg, ready int, timeout time.Duration) Reply {
	if ready < 0 {
		ready = Expected(msgs)
	}
	var held []byte
	for i, m := range msgs {
		if m.OnCopyIn {
			b, err := Encode(msgs[i:])
			if err != nil {
				return Reply{Err: err.Error()}
			}
			held, msgs = b, msgs[:i]
			break
		}
	}
	buf, err := Encode(msgs)
	if err != nil {
		return Reply{Err: err.Error()}
	}
	c.held = held
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.nc.Write(buf); err != nil {
		r := c.read(ready, 2*time.Second)
		r.Err = "write: " + err.Error()
		return r
	}
	copyData := held != nil
	for _, m := range msgs {
		copyData = copyData || m.T == "d" || m.T == "c" || m.T == "f"
	}
	c.copyAnswered = copyData
	return c.read(ready, timeout)
}

// Encode encodes a batch.
func Encode(msgs []Msg) ([]byte, error) {
	var buf []byte
	var err error
	for _, m := range msgs {
		var fm pgproto3.FrontendMessage
		text := m.SQL
		if m.Raw != nil {
			text = string(m.Raw)
		}
		switch m.T {
		case "Q":
			fm = &pgproto3.Query{String: text}
		case "P":
			fm = &pgproto3.Parse{Name: m.Name, Query: text, ParameterOIDs: m.Types}
		case "B":
			b := &pgproto3.Bind{DestinationPortal: m.Portal, PreparedStatement: m.Name, ParameterFormatCodes: m.ParamFormats, ResultFormatCodes: m.ResultFormat}
			switch {
			case m.GenParams > 0:
				b.Parameters = make([][]byte, m.GenParams)
				for i := range b.Parameters {
					b.Parameters[i] = []byte(fmt.Sprint(i + 1))
				}
			case m.BinParams != nil:
				b.Parameters = m.BinParams
			default:
				for _, p := range m.Params {
					if p == nil {
						b.Parameters = append(b.Parameters, nil)
					} else {
						b.Parameters = append(b.Parameters, []byte(*p))
					}
				}
			}
			fm = b
		case "E":
			fm = &pgproto3.Execute{Portal: m.Portal, MaxRows: m.MaxRows}
		case "D", "C":
			kind := byte('S')
			if m.Kind == "P" {
				kind = 'P'
			}
			name := m.Name
			if kind == 'P' {
				name = m.Portal
			}
			if m.T == "D" {
				fm = &pgproto3.Describe{ObjectType: kind, Name: name}
			} else {
				fm = &pgproto3.Close{ObjectType: kind, Name: name}
			}
		case "S":
			fm = &pgproto3.Sync{}
		case "H":
			fm = &pgproto3.Flush{}
		case "F":
			var args [][]byte
			for _, p := range m.Params {
				if p == nil {
					args = append(args, nil)
				} else {
					args = append(args, []byte(*p))
				}
			}
			fm = &pgproto3.FunctionCall{Function: m.Function, Arguments: args}
		case "d":
			fm = &pgproto3.CopyData{Data: m.Data}
		case "c":
			fm = &pgproto3.CopyDone{}
		case "f":
			fm = &pgproto3.CopyFail{Message: m.SQL}
		case "X":
			fm = &pgproto3.Terminate{}
		case "raw":
			buf = append(buf, m.Data...)
			continue
		default:
			return nil, fmt.Errorf("unknown message %q", m.T)
		}
		buf, err = fm.Encode(buf)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", m.T, err)
		}
	}
	return buf, nil
}

func str(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// read collects backend messages until ready ReadyForQuery messages came.
func (c *Conn) read(ready int, timeout time.Duration) Reply {
	var r Reply
	deadline := time.Now().Add(timeout)
	c.nc.SetReadDeadline(deadline)
	for ready > 0 {
		msg, err := c.fe.Receive()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
				r.Closed = true
			case errors.As(err, &ne) && ne.Timeout():
				r.Err = fmt.Sprintf("timeout after %s waiting for %d more ReadyForQuery", timeout, ready)
			default:
				r.Closed = true
				r.Err = err.Error()
			}
			return r
		}
		var b Back
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			b = Back{T: "E", Severity: m.Severity, Code: m.Code, Message: m.Message, Detail: m.Detail}
			b.Raw, _ = m.Encode(nil)
			if m.Severity == "FATAL" || m.Severity == "PANIC" {
				r.Msgs = append(r.Msgs, b)
				// The server (or interlock) closes after a FATAL; read
				// the end so Closed is reported.
				c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.fe.Receive(); err != nil {
					r.Closed = true
				}
				return r
			}
		case *pgproto3.NoticeResponse:
			b = Back{T: "N", Severity: m.Severity, Code: m.Code, Message: m.Message, Detail: m.Detail}
			b.Raw, _ = m.Encode(nil)
		case *pgproto3.CommandComplete:
			b = Back{T: "C", Tag: string(m.CommandTag)}
		case *pgproto3.ReadyForQuery:
			b = Back{T: "Z", Status: string([]byte{m.TxStatus})}
			ready--
		case *pgproto3.RowDescription:
			b = Back{T: "T"}
			for _, f := range m.Fields {
				b.Fields = append(b.Fields, Field{Name: string(f.Name), TableOID: f.TableOID, Column: f.TableAttributeNumber, TypeOID: f.DataTypeOID, Format: f.Format})
			}
		case *pgproto3.DataRow:
			b = Back{T: "D"}
			for _, v := range m.Values {
				b.Values = append(b.Values, str(v))
			}
		case *pgproto3.ParseComplete:
			b = Back{T: "1"}
		case *pgproto3.BindComplete:
			b = Back{T: "2"}
		case *pgproto3.CloseComplete:
			b = Back{T: "3"}
		case *pgproto3.NoData:
			b = Back{T: "n"}
		case *pgproto3.PortalSuspended:
			b = Back{T: "s"}
		case *pgproto3.ParameterStatus:
			b = Back{T: "S", Name: m.Name, Value: m.Value}
		case *pgproto3.BackendKeyData:
			b = Back{T: "K", PID: m.ProcessID}
		case *pgproto3.ParameterDescription:
			b = Back{T: "t"}
		case *pgproto3.CopyInResponse:
			b = Back{T: "G"}
			if c.held != nil {
				c.nc.Write(c.held)
				c.held = nil
			} else if !c.copyAnswered {
				c.fe.Send(&pgproto3.CopyFail{Message: "rawpg: no COPY data in this batch"})
				c.fe.Flush()
			}
		case *pgproto3.CopyOutResponse:
			b = Back{T: "H"}
		case *pgproto3.CopyData:
			b = Back{T: "d", Value: string(m.Data)}
		case *pgproto3.CopyDone:
			b = Back{T: "c"}
		case *pgproto3.EmptyQueryResponse:
			b = Back{T: "I"}
		case *pgproto3.NotificationResponse:
			b = Back{T: "A", Name: m.Channel, Value: m.Payload}
		case *pgproto3.FunctionCallResponse:
			b = Back{T: "V", Value: string(m.Result)}
		case *pgproto3.AuthenticationOk:
			b = Back{T: "R", Status: "ok"}
		case *pgproto3.AuthenticationSASL, *pgproto3.AuthenticationMD5Password, *pgproto3.AuthenticationCleartextPassword:
			r.Msgs = append(r.Msgs, Back{T: "R", Status: fmt.Sprintf("%T", m)})
			return r
		case *pgproto3.NegotiateProtocolVersion:
			b = Back{T: "v"}
		default:
			b = Back{T: fmt.Sprintf("%T", m)}
		}
		r.Msgs = append(r.Msgs, b)
	}
	return r
}
