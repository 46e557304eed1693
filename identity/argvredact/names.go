package argvredact

import (
	"path/filepath"
	"strings"
)

// secretParts are words of a flag, variable, header or query parameter
// name (split on '-', '_' and '.') that make it a secret's name.
var secretParts = map[string]bool{
	"token": true, "tokens": true, "password": true, "passwd": true, "pass": true,
	"passin": true, "passout": true, "passphrase": true, "secret": true, "secrets": true,
	"bearer": true, "apikey": true, "accesskey": true, "secretkey": true, "privatekey": true,
	"authkey": true, "authtoken": true, "accesstoken": true, "credential": true,
	"credentials": true, "creds": true, "cookie": true, "auth": true, "authorization": true,
	// keytool's -storepass, -keypass and their src/dest forms
	"storepass": true, "keypass": true, "srcstorepass": true, "deststorepass": true,
	"srckeypass": true, "destkeypass": true,
}

// nonSecretFirst, as a name's first word, makes it a switch about a
// secret, not one: --with-token (read from stdin), --ask-password,
// --generate-password.
var nonSecretFirst = map[string]bool{
	"no": true, "with": true, "without": true, "ask": true, "prompt": true, "show": true,
	"print": true, "generate": true, "skip": true, "disable": true, "enable": true,
	"require": true, "allow": true, "ignore": true,
}

// secretStems end the single word of a compound name that runs its
// words together (--dbpassword, CLIENTSECRET, --accesstoken).
var secretStems = []string{"token", "password", "passwd", "secret", "apikey", "accesskey",
	"secretkey", "privatekey", "passphrase", "credentials", "credential"}

// keyQualifiers make a following "key" a secret (--access-key,
// --api-key); "key" alone and --ssh-key, --client-key, --public-key
// usually name a file or a public value.
var keyQualifiers = map[string]bool{
	"access": true, "secret": true, "private": true, "api": true, "auth": true,
	"account": true, "master": true, "encryption": true, "signing": true, "session": true,
	"shared": true, "license": true, "sas": true, "subscription": true, "storage": true,
	"app": true, "consumer": true,
}

// nonSecretLast, as a name's last word, says the value is about the
// secret, not the secret itself: where it is (--password-file,
// --token-path), that it comes from elsewhere (--password-stdin, a
// boolean that takes no value), or a property of it (--auth-type).
var nonSecretLast = map[string]bool{
	"file": true, "files": true, "path": true, "dir": true, "directory": true, "stdin": true,
	"fd": true, "env": true, "type": true, "mode": true, "method": true, "mechanism": true,
	"ttl": true, "expiry": true, "expires": true, "expiration": true, "lifetime": true,
	"name": true, "names": true, "prompt": true, "helper": true, "command": true, "cmd": true,
	"length": true, "url": true, "uri": true, "endpoint": true, "host": true, "user": true,
	"username": true, "location": true, "kind": true, "version": true, "policy": true,
	"required": true, "source": true,
}

// secretQuery are query parameters that carry a credential under a name
// secretName does not know: signed URLs' signatures and Google's API key.
var secretQuery = map[string]bool{
	"sig": true, "signature": true, "key": true, "x-amz-signature": true,
	"x-amz-credential": true, "x-goog-signature": true, "x-goog-credential": true,
}

// secretName says whether name (a flag without its dashes, a variable,
// a header or a query parameter) names a secret. strict demands that a
// word be a secret word itself, not end with one: a single-dash word
// such as -psecret is more likely a short flag with its value attached
// than a flag named psecret.
func secretName(name string, strict bool) bool {
	n := strings.ToLower(name)
	if n == "" || strings.HasPrefix(n, "no-") || strings.HasPrefix(n, "no_") {
		return false
	}
	parts := strings.FieldsFunc(n, func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	if len(parts) == 0 {
		return false
	}
	if len(parts) > 1 && (nonSecretLast[parts[len(parts)-1]] || nonSecretFirst[parts[0]]) {
		return false
	}
	for i, p := range parts {
		switch {
		case secretParts[p]:
			return true
		case p == "pwd" && len(parts) > 1: // MYSQL_PWD; PWD alone is the working directory
			return true
		case p == "key" && i > 0 && keyQualifiers[parts[i-1]]:
			return true
		case !strict && hasStem(p):
			return true
		}
	}
	return false
}

func hasStem(p string) bool {
	for _, s := range secretStems {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// shortRule is a tool's single-letter option that carries a secret.
type shortRule struct {
	letter byte
	// attachedOnly: the option's value is optional and only its attached
	// form is one (mysql -pSECRET; -p alone prompts and the next word is
	// the database).
	attachedOnly bool
	// afterSep: only what follows the first sep in the value is secret
	// (curl -u user:password keeps the user).
	sep byte
	// login: the option is a secret only after a "login" word (docker
	// login -p; docker run -p is a port).
	login bool
}

var (
	mysqlRules  = []shortRule{{letter: 'p', attachedOnly: true}}
	mongoRules  = []shortRule{{letter: 'p'}}
	ldapRules   = []shortRule{{letter: 'w'}}
	mssqlRules  = []shortRule{{letter: 'P'}}
	loginRules  = []shortRule{{letter: 'p', login: true}}
	curlRules   = []shortRule{{letter: 'u', sep: ':'}, {letter: 'U', sep: ':'}, {letter: 'b'}}
	curlLong    = map[string]byte{"user": ':', "proxy-user": ':'}
	mysqlLongOp = map[string]bool{"password": true, "pass": true}
	pgBool      = map[string]bool{"password": true}
	// noValueLong are tools' options with a secret's name that take no
	// value: the next word is not theirs.
	noValueLong = map[string]map[string]bool{
		"psql": pgBool, "pg_dump": pgBool, "pg_dumpall": pgBool, "pg_restore": pgBool,
		"pg_basebackup": pgBool, "createdb": pgBool, "dropdb": pgBool, "createuser": pgBool,
		"dropuser": pgBool, "vacuumdb": pgBool, "reindexdb": pgBool, "clusterdb": pgBool,
		"pg_isready": pgBool, "pgbench": pgBool,
	}
)

// tools are the programs whose short options are known; any other
// program's short options are left as they are.
var tools = map[string][]shortRule{
	"mysql": mysqlRules, "mysqldump": mysqlRules, "mysqladmin": mysqlRules, "mysqlimport": mysqlRules,
	"mysqlshow": mysqlRules, "mysqlcheck": mysqlRules, "mysqlslap": mysqlRules, "mysqlpump": mysqlRules,
	"mysqlbinlog": mysqlRules, "mariadb": mysqlRules, "mariadb-dump": mysqlRules, "mariadb-admin": mysqlRules,
	"sshpass":   {{letter: 'p'}},
	"redis-cli": {{letter: 'a'}}, "valkey-cli": {{letter: 'a'}},
	"mongo": mongoRules, "mongosh": mongoRules, "mongodump": mongoRules, "mongorestore": mongoRules,
	"mongoexport": mongoRules, "mongoimport": mongoRules,
	"ldapsearch": ldapRules, "ldapmodify": ldapRules, "ldapadd": ldapRules, "ldapdelete": ldapRules,
	"ldapwhoami": ldapRules, "ldappasswd": ldapRules, "ldapcompare": ldapRules, "ldapmodrdn": ldapRules,
	"sqlcmd": mssqlRules, "bcp": mssqlRules, "osql": mssqlRules,
	"openssl": {{letter: 'k'}},
	"docker":  loginRules, "podman": loginRules, "nerdctl": loginRules, "buildah": loginRules,
	"skopeo": loginRules, "helm": loginRules, "oras": loginRules, "az": loginRules,
	"curl":      curlRules,
	"lftp":      {{letter: 'u', sep: ','}},
	"smbclient": {{letter: 'U', sep: '%'}},
}

// plainTools have no secret short option, but name a program: after
// one, the options are its own (sshpass -p pw ssh -p 22: the second -p is
// ssh's port).
var plainTools = []string{"ssh", "scp", "sftp", "rsync", "git", "kubectl", "psql", "pg_dump",
	"pg_restore", "pg_dumpall", "pg_basebackup", "createdb", "dropdb", "createuser", "dropuser",
	"vacuumdb", "reindexdb", "clusterdb", "pg_isready", "pgbench", "keytool", "env", "sudo", "doas", "su", "timeout", "nice", "nohup", "xargs", "exec", "wget",
	"aws", "gcloud", "vault", "gh", "terraform", "ansible", "ansible-playbook", "make", "npm",
	"python", "python3", "node", "ruby", "perl", "java", "go", "tar", "cat", "echo", "grep",
	"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"}

func init() {
	for _, t := range plainTools {
		if _, ok := tools[t]; !ok {
			tools[t] = nil
		}
	}
}

func isShell(tool string) bool {
	switch tool {
	case "sh", "bash", "dash", "zsh", "ksh", "ash", "busybox":
		return true
	}
	return false
}

// toolName is the program a word names, when it is one of tools.
func toolName(word string) (string, bool) {
	b := filepath.Base(word)
	if _, ok := tools[b]; ok {
		return b, true
	}
	return "", false
}

// tokenLike says whether a URL's user name, with no password, is itself
// a credential: a known token prefix, or a long opaque string.
func tokenLike(user string) bool {
	for _, p := range []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-"} {
		if strings.HasPrefix(user, p) {
			return true
		}
	}
	if len(user) < 32 {
		return false
	}
	for i := 0; i < len(user); i++ {
		c := user[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
