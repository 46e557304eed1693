// Package idclaims reads who an ID token from the company's identity
// provider names, and the roles the hub's role mapping gives them. The
// hub's approver API (bearer tokens) and its console (sign-in) both go
// through it, so a person is the same person, with the same roles, on
// either path.
package idclaims

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/interlock/interlock/hub/hubapi"
)

// Defaults of Mapping's claims.
const (
	DefaultUsernameClaim = "preferred_username"
	DefaultGroupsClaim   = "groups"
)

// Mapping says which claims name a person and their groups, and which
// groups hold which role.
type Mapping struct {
	// UsernameClaim is the claim compared with the requester's login
	// user, sudo chain and CI actor, and with a rule's approver names;
	// GroupsClaim the one compared with its @groups and the role mapping.
	UsernameClaim string
	GroupsClaim   string
	// Roles maps a role (hubapi.RoleApprover, RoleAuditor, RoleAdmin) to
	// the IdP groups that hold it.
	Roles map[string][]string
}

// Principal is the person tok names, with their roles. A token without
// the username claim names nobody the hub could tell from a requester,
// and is refused.
func (m Mapping) Principal(tok *oidc.IDToken) (hubapi.Principal, error) {
	userClaim, groupsClaim := m.UsernameClaim, m.GroupsClaim
	if userClaim == "" {
		userClaim = DefaultUsernameClaim
	}
	if groupsClaim == "" {
		groupsClaim = DefaultGroupsClaim
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return hubapi.Principal{}, errors.New("the ID token's claims do not parse")
	}
	p := hubapi.Principal{Approver: hubapi.Approver{Issuer: tok.Issuer, Subject: tok.Subject}}
	p.Username, _ = claims[userClaim].(string)
	if strings.TrimSpace(p.Username) == "" {
		return hubapi.Principal{}, fmt.Errorf("the ID token has no %s claim: the hub needs it to tell who it names", userClaim)
	}
	p.Email, _ = claims["email"].(string)
	p.Name, _ = claims["name"].(string)
	switch g := claims[groupsClaim].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				p.Groups = append(p.Groups, s)
			}
		}
	case string:
		p.Groups = []string{g}
	}
	p.Roles = m.RolesFor(p.Groups)
	return p, nil
}

// RolesFor is the roles the mapping gives to members of groups, in the
// order approver, auditor, admin. A role outside those three gives
// nothing.
func (m Mapping) RolesFor(groups []string) []string {
	var out []string
	for _, role := range []string{hubapi.RoleApprover, hubapi.RoleAuditor, hubapi.RoleAdmin} {
		for _, g := range m.Roles[role] {
			if slices.Contains(groups, g) {
				out = append(out, role)
				break
			}
		}
	}
	return out
}
