package argvredact

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

const R = Marker

func TestArgv(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []string
		want []string
		n    int
	}{
		{"kubectl token attached", []string{"kubectl", "--token=eyJhbGciOi.x.y", "get", "pods"}, []string{"kubectl", "--token=" + R, "get", "pods"}, 1},
		{"kubectl token separate", []string{"kubectl", "--token", "eyJ", "get", "pods"}, []string{"kubectl", "--token", R, "get", "pods"}, 1},
		{"kubeconfig is a path", []string{"kubectl", "--kubeconfig", "/home/a/.kube/config", "get", "pods"}, nil, 0},
		{"psql url", []string{"psql", "postgresql://app:s3cret@db/app", "-c", "select 1"}, []string{"psql", "postgresql://app:" + R + "@db/app", "-c", "select 1"}, 1},
		{"psql conninfo", []string{"psql", "host=db user=app password=s3cret dbname=app"}, []string{"psql", "host=db user=app password=" + R + " dbname=app"}, 1},
		{"psql conninfo quoted", []string{"psql", "host=db password='s3 cret' dbname=app"}, []string{"psql", "host=db password='" + R + "' dbname=app"}, 1},
		{"mysql attached", []string{"mysql", "-uroot", "-pSECRET", "app"}, []string{"mysql", "-uroot", "-p" + R, "app"}, 1},
		{"mysql -p prompts, next is the database", []string{"mysql", "-p", "app"}, nil, 0},
		{"mysql --password optional", []string{"/usr/bin/mysql", "--password", "app"}, nil, 0},
		{"mysql --password=", []string{"mysql", "--password=SECRET", "app"}, []string{"mysql", "--password=" + R, "app"}, 1},
		{"mysqldump attached", []string{"mysqldump", "-pX", "db"}, []string{"mysqldump", "-p" + R, "db"}, 1},
		{"curl bearer header", []string{"curl", "-H", "Authorization: Bearer abc.def", "https://api"}, []string{"curl", "-H", "Authorization: Bearer " + R, "https://api"}, 1},
		{"curl header long", []string{"curl", "--header=X-Api-Key: k123", "https://api"}, []string{"curl", "--header=X-Api-Key: " + R, "https://api"}, 1},
		{"curl basic header", []string{"curl", "-H", "authorization:Basic dXNlcjpwdw==", "u"}, []string{"curl", "-H", "authorization:Basic " + R, "u"}, 1},
		{"curl cookie header", []string{"curl", "-H", "Cookie: session=abc; x=y"}, []string{"curl", "-H", "Cookie: " + R}, 1},
		{"curl other header kept", []string{"curl", "-H", "Accept: application/json"}, nil, 0},
		{"curl -u", []string{"curl", "-u", "alice:pw", "https://x"}, []string{"curl", "-u", "alice:" + R, "https://x"}, 1},
		{"curl -u attached", []string{"curl", "-ualice:pw", "https://x"}, []string{"curl", "-ualice:" + R, "https://x"}, 1},
		{"curl --user", []string{"curl", "--user", "alice:pw"}, []string{"curl", "--user", "alice:" + R}, 1},
		{"curl -u without password", []string{"curl", "-u", "alice", "https://x"}, nil, 0},
		{"curl oauth2 bearer", []string{"curl", "--oauth2-bearer", "tok", "u"}, []string{"curl", "--oauth2-bearer", R, "u"}, 1},
		{"sshpass", []string{"sshpass", "-p", "pw", "ssh", "-p", "22", "host"}, []string{"sshpass", "-p", R, "ssh", "-p", "22", "host"}, 1},
		{"sshpass attached", []string{"sshpass", "-ppw", "ssh", "host"}, []string{"sshpass", "-p" + R, "ssh", "host"}, 1},
		{"docker login -p", []string{"docker", "login", "-u", "me", "-p", "X", "reg"}, []string{"docker", "login", "-u", "me", "-p", R, "reg"}, 1},
		{"docker run -p is a port", []string{"docker", "run", "-p", "80:80", "img"}, nil, 0},
		{"docker --password-stdin takes no value", []string{"docker", "login", "--password-stdin", "reg"}, nil, 0},
		{"aws secret", []string{"aws", "configure", "--secret-access-key", "X", "--profile", "p"}, []string{"aws", "configure", "--secret-access-key", R, "--profile", "p"}, 1},
		{"access key", []string{"tool", "--access-key=AKIA"}, []string{"tool", "--access-key=" + R}, 1},
		{"api key", []string{"tool", "--api-key", "k", "--apikey=k2"}, []string{"tool", "--api-key", R, "--apikey=" + R}, 2},
		{"private key", []string{"tool", "--private-key", "k"}, []string{"tool", "--private-key", R}, 1},
		{"client secret", []string{"tool", "--client-secret=cs", "--client-id=id"}, []string{"tool", "--client-secret=" + R, "--client-id=id"}, 1},
		{"ssh key is a path", []string{"tool", "--ssh-key", "/k", "--key", "/k2", "--client-key", "/k3"}, nil, 0},
		{"auth", []string{"tool", "--auth", "u:p", "--auth-type", "basic"}, []string{"tool", "--auth", R, "--auth-type", "basic"}, 1},
		{"author is not auth", []string{"git", "commit", "--author", "A <a@b>"}, nil, 0},
		{"no- booleans", []string{"tool", "--no-password", "x"}, nil, 0},
		{"password file is a path", []string{"tool", "--password-file", "/p", "--token-path=/t"}, nil, 0},
		{"passwd", []string{"tool", "--passwd", "x"}, []string{"tool", "--passwd", R}, 1},
		{"bearer", []string{"tool", "--bearer-token=x"}, []string{"tool", "--bearer-token=" + R}, 1},
		{"git url token", []string{"git", "clone", "https://user:ghp_abc@github.com/o/r"}, []string{"git", "clone", "https://user:" + R + "@github.com/o/r"}, 1},
		{"git url token as user", []string{"git", "clone", "https://ghp_0123456789abcdef@github.com/o/r"}, []string{"git", "clone", "https://" + R + "@github.com/o/r"}, 1},
		{"ssh url user kept", []string{"git", "clone", "ssh://git@github.com/o/r"}, nil, 0},
		{"url in flag value", []string{"app", "--db=mysql://u:p@h:3306/d"}, []string{"app", "--db=mysql://u:" + R + "@h:3306/d"}, 1},
		{"url query token", []string{"curl", "https://h/x?a=1&access_token=T&b=2"}, []string{"curl", "https://h/x?a=1&access_token=" + R + "&b=2"}, 1},
		{"url query sig", []string{"curl", "https://acct.blob/c?sv=1&sig=S"}, []string{"curl", "https://acct.blob/c?sv=1&sig=" + R}, 1},
		{"url empty password", []string{"x", "ftp://anon:@h/"}, nil, 0},
		{"two urls", []string{"x", "a://u:p1@h b://v:p2@k"}, []string{"x", "a://u:" + R + "@h b://v:" + R + "@k"}, 2},
		{"env assignment", []string{"env", "PGPASSWORD=pw", "GITHUB_TOKEN=t", "HOME=/h", "psql"}, []string{"env", "PGPASSWORD=" + R, "GITHUB_TOKEN=" + R, "HOME=/h", "psql"}, 2},
		{"mysql pwd env, PWD kept", []string{"env", "MYSQL_PWD=x", "PWD=/tmp"}, []string{"env", "MYSQL_PWD=" + R, "PWD=/tmp"}, 1},
		{"helm set", []string{"helm", "install", "--set", "auth.password=x", "--set", "replicas=2"}, []string{"helm", "install", "--set", "auth.password=" + R, "--set", "replicas=2"}, 1},
		{"sh -c script", []string{"sh", "-c", "PGPASSWORD=pw psql -h db; mysql -pS app"}, []string{"sh", "-c", "PGPASSWORD=" + R + " psql -h db; mysql -p" + R + " app"}, 2},
		{"sh -c curl header", []string{"bash", "-c", `curl -H "Authorization: Bearer abc" https://x`}, []string{"bash", "-c", `curl -H "Authorization: Bearer ` + R + `" https://x`}, 1},
		{"sh -c quoted flag", []string{"sh", "-c", `kubectl --token "a b" get po`}, []string{"sh", "-c", `kubectl --token "` + R + `" get po`}, 1},
		{"sh -c export", []string{"sh", "-c", "export API_KEY='k k'; run"}, []string{"sh", "-c", "export API_KEY='" + R + "'; run"}, 1},
		{"nested sh -c", []string{"sh", "-c", `sh -c 'mysql -pS db'`}, []string{"sh", "-c", `sh -c 'mysql -p` + R + ` db'`}, 1},
		{"quote across span redacts the word", []string{"sh", "-c", `x "--tok"en=a'b'c y`}, []string{"sh", "-c", `x ` + R + ` y`}, 1},
		{"go style single dash", []string{"consul", "-token=abc", "-password", "p"}, []string{"consul", "-token=" + R, "-password", R}, 2},
		{"openssl pass", []string{"openssl", "enc", "-k", "pw", "-passin", "pass:x"}, []string{"openssl", "enc", "-k", R, "-passin", R}, 2},
		{"redis-cli", []string{"redis-cli", "-a", "pw", "ping"}, []string{"redis-cli", "-a", R, "ping"}, 1},
		{"mongosh", []string{"mongosh", "-u", "u", "-p", "pw"}, []string{"mongosh", "-u", "u", "-p", R}, 1},
		{"sqlcmd", []string{"sqlcmd", "-S", "h", "-P", "pw"}, []string{"sqlcmd", "-S", "h", "-P", R}, 1},
		{"ldapsearch", []string{"ldapsearch", "-D", "cn=a", "-w", "pw"}, []string{"ldapsearch", "-D", "cn=a", "-w", R}, 1},
		{"unknown tool short kept", []string{"foo", "-p", "pw"}, nil, 0},
		{"single-dash attached is not a name", []string{"foo", "-psecret", "db"}, nil, 0},
		{"token last with no value", []string{"kubectl", "get", "--token"}, nil, 0},
		{"value starting with dash", []string{"kubectl", "--token", "-abc", "get"}, []string{"kubectl", "--token", R, "get"}, 1},
		{"repeated flags", []string{"x", "--token=a", "--token=b", "--token", "c"}, []string{"x", "--token=" + R, "--token=" + R, "--token", R}, 3},
		{"empty value", []string{"x", "--token="}, nil, 0},
		{"sudo wrapper", []string{"sudo", "-u", "root", "mysql", "-pS"}, []string{"sudo", "-u", "root", "mysql", "-p" + R}, 1},
		{"wrapper via path", []string{"/usr/bin/env", "/usr/bin/sshpass", "-p", "pw", "ssh", "h"}, []string{"/usr/bin/env", "/usr/bin/sshpass", "-p", R, "ssh", "h"}, 1},
		{"process title with url", []string{"worker: postgres://u:pw@h/db idle"}, []string{"worker: postgres://u:" + R + "@h/db idle"}, 1},
		{"git extraheader", []string{"git", "-c", "http.extraHeader=Authorization: Basic abc", "fetch"}, []string{"git", "-c", "http.extraHeader=Authorization: Basic " + R, "fetch"}, 1},
		{"skopeo creds", []string{"skopeo", "copy", "--src-creds", "u:p", "a", "b"}, []string{"skopeo", "copy", "--src-creds", R, "a", "b"}, 1},
		{"psql --password prompts", []string{"psql", "--password", "-h", "db"}, nil, 0},
		{"pg_dump --password=", []string{"pg_dump", "--password=x"}, []string{"pg_dump", "--password=" + R}, 1},
		{"gh --with-token takes no value", []string{"gh", "auth", "login", "--with-token", "--hostname", "h"}, nil, 0},
		{"kubectl from-literal", []string{"kubectl", "create", "secret", "generic", "s", "--from-literal=password=x", "--from-literal=user=u"},
			[]string{"kubectl", "create", "secret", "generic", "s", "--from-literal=password=" + R, "--from-literal=user=u"}, 1},
		{"docker env", []string{"docker", "run", "-e", "DB_PASSWORD=x", "--env=API_TOKEN=y", "img"},
			[]string{"docker", "run", "-e", "DB_PASSWORD=" + R, "--env=API_TOKEN=" + R, "img"}, 2},
		{"java system properties", []string{"java", "-Dspring.datasource.password=x", "-DPASSWORD=y", "-Dfile.encoding=UTF-8", "-jar", "a.jar"},
			[]string{"java", "-Dspring.datasource.password=" + R, "-DPASSWORD=" + R, "-Dfile.encoding=UTF-8", "-jar", "a.jar"}, 2},
		{"keytool", []string{"keytool", "-list", "-storepass", "changeit", "-keypass", "k"}, []string{"keytool", "-list", "-storepass", R, "-keypass", R}, 2},
		{"curl form data", []string{"curl", "-d", "user=a&password=x&x=1", "u"}, []string{"curl", "-d", "user=a&password=" + R + "&x=1", "u"}, 1},
		{"curl json data", []string{"curl", "-d", `{"username":"a","password":"x\"y","n":1}`, "u"},
			[]string{"curl", "-d", `{"username":"a","password":"` + R + `","n":1}`, "u"}, 1},
		{"json with spaces", []string{"x", `{"client_secret": "s s", "id": "i"}`}, []string{"x", `{"client_secret": "` + R + `", "id": "i"}`}, 1},
		{"json in sh -c", []string{"sh", "-c", `curl -d '{"token":"t"}' u`}, []string{"sh", "-c", `curl -d '{"token":"` + R + `"}' u`}, 1},
		{"nothing", []string{"ls", "-la", "/tmp"}, nil, 0},
		{"empty", nil, nil, 0},
		{"lone dash", []string{"cat", "-", "--"}, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig := slices.Clone(c.in)
			got, n := Argv(c.in)
			want := c.want
			if want == nil {
				want = c.in
			}
			if !slices.Equal(got, want) || n != c.n {
				t.Errorf("Argv(%q)\n got %q, %d\nwant %q, %d", c.in, got, n, want, c.n)
			}
			if !slices.Equal(c.in, orig) {
				t.Errorf("the input was modified: %q", c.in)
			}
			// Redacting again finds nothing more: a record redacted twice
			// (a cached resolution, a daemon's copy) says the same.
			again, n2 := Argv(got)
			if !slices.Equal(again, got) || n2 != 0 {
				t.Errorf("not idempotent: %q, %d", again, n2)
			}
		})
	}
}

func TestLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"mysql -pS app", "mysql -p" + R + " app"},
		{"ls -la", "ls -la"},
		{`PGPASSWORD="a\"b" psql`, `PGPASSWORD="` + R + `" psql`},
		{"curl -u a:b https://x | jq .", "curl -u a:" + R + " https://x | jq ."},
		{"echo 'unterminated --token x", "echo 'unterminated --token " + R},
		{"", ""},
	} {
		got, _ := Line(c.in)
		if got != c.want {
			t.Errorf("Line(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"token": true, "TOKEN": true, "GITHUB_TOKEN": true, "access-token": true, "accesstoken": true,
		"password": true, "DB_PASSWORD": true, "dbpassword": true, "passwd": true, "pass": true,
		"secret": true, "client-secret": true, "AWS_SECRET_ACCESS_KEY": true, "api_key": true,
		"x-api-key": true, "authorization": true, "cookie": true, "private-token": true,
		"kubeconfig": false, "key": false, "ssh-key": false, "public-key": false, "tokenizer": false,
		"password-file": false, "password-stdin": false, "token-ttl": false, "no-auth": false,
		"author": false, "PWD": false, "OLDPWD": false, "HOME": false, "bypass": false, "": false,
		"authentication-database": false, "compass": false, "with-token": false, "ask-password": false,
		"storepass": true, "spring.datasource.password": true,
	} {
		if got := secretName(name, false); got != want {
			t.Errorf("secretName(%q) = %v, want %v", name, got, want)
		}
	}
	if secretName("psecret", true) || !secretName("token", true) {
		t.Error("strict names must be whole words")
	}
}

// Adversarial inputs: huge, invalid UTF-8, pathological quoting. Nothing
// panics, the result is valid UTF-8 when the input is, the same each
// time, and no secret survives.
func TestAdversarial(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	cases := [][]string{
		{"x", "--token=" + huge},
		{"x", strings.Repeat("'", 1<<16)},
		{"x", strings.Repeat(`"\`, 1<<15)},
		{"x", strings.Repeat("://", 1<<15)},
		{"x", strings.Repeat("a://u:p@", 1<<14)},
		{"x", strings.Repeat("--token ", 1<<14)},
		{"x", strings.Repeat("?token=&", 1<<14)},
		{"sh", "-c", strings.Repeat("sh -c '", 100) + "mysql -pS"},
		{"x", "--token=\xff\xfe\x00bad"},
		{"x", "\xff--token", "\xff"},
		{"\xff\xfe", "-p\xff"},
		{"x", "postgresql://u:\xffpw@h"},
		{"x", "Authorization: Bearer \xf0\x9f\x94\x91"},
		{"x", "--tøken=ü", "PÄSSWORD=x"},
		{"", "", ""},
		{"x", ":", "=", "-", "--", "--=", "-=", "@", "://", "a://@", "a://:@", "-D", "-D=", "-D=x", "--a=", "--a==", "&", ";=", `"`, `"a":`, `"token":"`, `"token":"\`},
		{"x", strings.Repeat(`"token":"`, 1<<14)},
		{"x", strings.Repeat(`"a":`, 1<<15)},
		{"x", strings.Repeat("a=b&", 1<<15)},
	}
	for _, argv := range cases {
		got, n := Argv(argv)
		got2, n2 := Argv(argv)
		if !slices.Equal(got, got2) || n != n2 {
			t.Errorf("not deterministic for %.60q", argv)
		}
		for i, a := range argv {
			if utf8.ValidString(a) && !utf8.ValidString(got[i]) {
				t.Errorf("valid UTF-8 %.60q became invalid: %.60q", a, got[i])
			}
		}
		if len(got) != len(argv) {
			t.Errorf("argv length changed: %d → %d", len(argv), len(got))
		}
	}
	if got, n := Argv([]string{"x", "--token=" + huge}); n != 1 || got[1] != "--token="+R {
		t.Errorf("huge value: %.40q, %d", got[1], n)
	}
	if got, _ := Argv([]string{"x", "postgresql://u:\xffpw@h"}); strings.Contains(got[1], "pw") {
		t.Errorf("invalid UTF-8 password kept: %q", got[1])
	}
	deep, _ := Argv([]string{"sh", "-c", strings.Repeat("sh -c '", 100) + "mysql -pSECRET"})
	_ = deep // past maxDepth the text is left: bounded work matters more than a 100-deep script
}

func FuzzArgv(f *testing.F) {
	f.Add("kubectl", "--token=x", "sh -c 'mysql -pS'")
	f.Add("psql", "postgresql://u:p@h/d", "Authorization: Bearer x")
	f.Add("curl", `{"password": "x"}`, "a=1&token=t")
	f.Add("sh", "-c", `x "--tok"en=a'b'c "$(mysql -pS)" -Dpassword=x`)
	f.Add("mysql", `-p\x'y`, `--from-literal=token=\'`)
	f.Fuzz(func(t *testing.T, a, b, c string) {
		argv := []string{a, b, c}
		got, n := Argv(argv)
		again, n2 := Argv(argv)
		if !slices.Equal(got, again) || n != n2 || len(got) != 3 {
			t.Fatal("not deterministic")
		}
		if n == 0 && !slices.Equal(got, argv) {
			t.Fatal("changed without counting")
		}
		if _, n3 := Argv(got); n3 != 0 {
			t.Fatalf("redacting %q again replaced %d more", got, n3)
		}
	})
}

func FuzzLine(f *testing.F) {
	f.Add(`PGPASSWORD="a\"b" psql 'postgres://u:p@h' -c "select 1"`)
	f.Add(`curl -H 'Authorization: Bearer x' -d '{"token":"t"}'`)
	f.Fuzz(func(t *testing.T, s string) {
		got, n := Line(s)
		if again, n2 := Line(s); again != got || n2 != n {
			t.Fatal("not deterministic")
		}
		if n == 0 && got != s {
			t.Fatal("changed without counting")
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("%q became invalid UTF-8: %q", s, got)
		}
	})
}
