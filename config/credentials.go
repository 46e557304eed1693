package config

import (
	"fmt"
	"os"
	"strings"
)

// Password reads the password the credentials name, from password_file
// or password_env, with one rule for every protocol: a file's trailing
// newlines are not part of the password, and an empty password (an empty
// file, an unset or empty variable) is an error that says so, never a
// login attempted without one. It returns "" and no error when the
// credentials name no password (a postgres target that logs in by trust
// or certificate, an ssh target with a key).
func (c *Credentials) Password() (string, error) {
	switch {
	case c == nil:
		return "", nil
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("credentials.password_file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("credentials.password_file: %s is empty; write the target's password in it (one line)", c.PasswordFile)
		}
		return pw, nil
	case c.PasswordEnv != "":
		pw, ok := os.LookupEnv(c.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("credentials.password_env: %s is not set in interlock's environment; set it where interlock starts (the unit's Environment= or EnvironmentFile=)", c.PasswordEnv)
		}
		if pw == "" {
			return "", fmt.Errorf("credentials.password_env: %s is empty in interlock's environment; set it to the target's password", c.PasswordEnv)
		}
		return pw, nil
	}
	return "", nil
}
