package adversarial

import "time"

// Class 2: a setting that changes how the server reads text, changed in
// the same write as (pipelined under) the statement interlock judges.
// Under standard_conforming_strings = on the attack text is two string
// literals; under off, \' escapes the quote and the text is a SELECT and
// a DROP TABLE (or a call of a function that drops). Under a client
// encoding whose multibyte characters can end in 0x5c (SJIS, BIG5, GBK),
// the server reads 0x95 0x5c as one character where a UTF-8 reader sees a
// backslash escaping the quote after it. Expected: refused, or the session
// ended; never the DROP.

const policyDenyDrop = `
  rules:
    - name: no-drop-table
      match: {operation: {kinds: [drop_table]}}
      action: deny
`

const policyDenyDropNoOpaque = `
  rules:
    - name: no-drop-table
      match: {operation: {kinds: [drop_table], include_opaque: false}}
      action: deny
`

// Harmless under standard_conforming_strings = on; a DROP under off.
const scsDrop = `SELECT 'x\' AS a, ' ; DROP TABLE victim; --' AS b`

// One statement: harmless under on; under off it calls drop_victim().
const scsCall = `SELECT 'x\' AS a, ' , drop_victim() AS b --' AS c`

var dropVictimFn = []string{
	"CREATE FUNCTION drop_victim() RETURNS int LANGUAGE plpgsql AS $$BEGIN DROP TABLE victim; RETURN 1; END$$",
}

// mbDrop builds the multibyte attack: lead is a byte that, with the 0x5c
// after it, is one character of the encoding.
func mbDrop(lead byte) []byte {
	return append(append([]byte("SELECT E'"), lead), []byte(`\' ; DROP TABLE victim; --' AS b`)...)
}

func mbCall(lead byte) []byte {
	return append(append([]byte("SELECT E'"), lead), []byte(`\' , drop_victim() AS b --' AS c`)...)
}

func init() {
	add(
		advCase{
			name: "c2-scs-off-in-the-same-query-string", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: harmless, noControl: true,
			run: func(c *caseRun) {
				// The server parses the whole string before the SET runs:
				// the SELECT stays two literals. The journal must agree.
				c.send(0, q("SET standard_conforming_strings = off; "+scsDrop))
			},
		},
		advCase{
			name: "c2-scs-off-then-query-in-one-write", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SET standard_conforming_strings = off"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-set-config-then-query", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SELECT set_config('standard_conforming_strings', 'off', false)"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-off-by-a-function", class: 2, policy: policyDenyDropNoOpaque, effect: victimIntact, mode: mustRefuse,
			setup: []string{"CREATE FUNCTION scs_off() RETURNS text LANGUAGE sql AS $$SELECT set_config('standard_conforming_strings', 'off', false)$$"},
			run: func(c *caseRun) {
				c.send(0, q("SELECT scs_off()"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-reset-to-the-role-setting", class: 2, loginMayBeRefused: true, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			super: []string{"ALTER ROLE {{role}} SET standard_conforming_strings = off"},
			run: func(c *caseRun) {
				c.send(0, q("SET standard_conforming_strings = on"))
				// RESET goes back to the role's off.
				c.send(0, q("RESET standard_conforming_strings"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-discard-all-to-the-role-setting", class: 2, loginMayBeRefused: true, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			super: []string{"ALTER ROLE {{role}} SET standard_conforming_strings = off"},
			run: func(c *caseRun) {
				c.send(0, q("SET standard_conforming_strings = on"))
				c.send(0, q("DISCARD ALL"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-set-in-transaction-then-rollback", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SET standard_conforming_strings = off"))
				c.send(0, q("BEGIN"))
				c.send(0, q("SET standard_conforming_strings = on"))
				// The ROLLBACK restores off.
				c.send(0, q("ROLLBACK"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-set-local-reverts-at-commit", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SET standard_conforming_strings = off"))
				c.send(0, q("BEGIN"), q("SET LOCAL standard_conforming_strings = on"))
				// SET LOCAL ends with the transaction: off again.
				c.send(0, q("COMMIT"), q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-rollback-to-savepoint", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SET standard_conforming_strings = off"))
				c.send(0, q("BEGIN"), q("SAVEPOINT a"), q("SET standard_conforming_strings = on"))
				c.send(0, q("ROLLBACK TO SAVEPOINT a"), q(scsDrop), q("COMMIT"))
			},
		},
		advCase{
			name: "c2-sjis-restored-by-rollback", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SET client_encoding = 'SJIS'"))
				c.send(0, q("BEGIN"), q("SET LOCAL client_encoding = 'UTF8'"))
				c.send(0, q("ROLLBACK"), qraw(mbDrop(0x95)))
			},
		},
		advCase{
			name: "c2-scs-set-local-inside-transaction", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("BEGIN"), q("SET LOCAL standard_conforming_strings = off"), q(scsDrop), q("COMMIT"))
			},
		},
		advCase{
			name: "c2-scs-off-at-startup", class: 2, loginMayBeRefused: true, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			startup: map[string]string{"options": "-c standard_conforming_strings=off"},
			run: func(c *caseRun) {
				c.send(0, q(scsDrop))
			},
		},
		advCase{
			name: "c2-scs-extended-segment-no-sync", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse, setup: dropVictimFn,
			run: func(c *caseRun) {
				c.send(0, join(extQuery("SET standard_conforming_strings = off"), extQuery(scsCall), syncMsg())...)
			},
		},
		advCase{
			name: "c2-scs-extended-set-then-simple-query", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				// No Sync between the SET's Execute and the Query. The
				// Sync after them brings one ReadyForQuery, or two when the
				// SET succeeded (the Query then runs and answers too).
				c.sendOpts(0, 1, 20*time.Second, join(extQuery("SET standard_conforming_strings = off"), q(scsDrop), syncMsg())...)
				c.drain(0, 1500*time.Millisecond)
			},
		},
		advCase{
			name: "c2-scs-simple-set-then-extended-query", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse, setup: dropVictimFn,
			run: func(c *caseRun) {
				c.send(0, join(q("SET standard_conforming_strings = off"), extQuery(scsCall), syncMsg())...)
			},
		},
		advCase{
			name: "c2-sjis-then-query-in-one-write", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SET client_encoding = 'SJIS'"), qraw(mbDrop(0x95)))
			},
		},
		advCase{
			name: "c2-sjis-in-the-same-query-string", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: harmless, noControl: true,
			run: func(c *caseRun) {
				// The whole message is converted from UTF8 before the SET
				// runs: invalid UTF-8, refused by the server.
				c.send(0, qraw(append([]byte("SET client_encoding = 'SJIS'; "), mbDrop(0x95)...)))
			},
		},
		advCase{
			name: "c2-sjis-extended-segment-no-sync", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse, setup: dropVictimFn,
			run: func(c *caseRun) {
				c.send(0, join(extQuery("SET client_encoding = 'SJIS'"), parseRaw("", mbCall(0x95)), bind("", ""), execute("", 0), syncMsg())...)
			},
		},
		advCase{
			name: "c2-big5-extended-segment-no-sync", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse, setup: dropVictimFn,
			run: func(c *caseRun) {
				c.send(0, join(extQuery("SET client_encoding TO 'BIG5'"), parseRaw("", mbCall(0xa4)), bind("", ""), execute("", 0), syncMsg())...)
			},
		},
		advCase{
			name: "c2-gbk-set-config-then-query", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("SELECT set_config('client_encoding', 'GBK', false)"), qraw(mbDrop(0x81)))
			},
		},
		advCase{
			name: "c2-big5-set-local-in-transaction", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			run: func(c *caseRun) {
				c.send(0, q("BEGIN"), q("SET LOCAL client_encoding = 'BIG5'"), qraw(mbDrop(0xa4)), q("COMMIT"))
			},
		},
		advCase{
			name: "c2-sjis-quote-as-second-byte", class: 2, policy: policyDenyDrop, effect: victimIntact, mode: harmless, noControl: true,
			run: func(c *caseRun) {
				// 0x81 0x27 is no SJIS character: the server refuses the
				// text; a reader that takes 0x81 as a lead byte would hide
				// the quote.
				c.send(0, q("SET client_encoding = 'SJIS'"), qraw([]byte("SELECT '\x81' ; DROP TABLE victim; --'")))
			},
		},
		advCase{
			name: "c2-sjis-reset-to-the-role-setting", class: 2, loginMayBeRefused: true, policy: policyDenyDrop, effect: victimIntact, mode: mustRefuse,
			super: []string{"ALTER ROLE {{role}} SET client_encoding = 'SJIS'"},
			run: func(c *caseRun) {
				c.send(0, q("SET client_encoding = 'UTF8'"))
				c.send(0, q("RESET client_encoding"), qraw(mbDrop(0x95)))
			},
		},
	)
}
