package expr

import "testing"

// benchVars answers by kind without allocating.
type benchVars struct{}

func (benchVars) Var(v Var) (string, bool) {
	switch v.Kind {
	case KindURI:
		return "/api/v1/users/42", true
	case KindHeader:
		return "Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0", true
	case KindRemoteAddr:
		return "10.20.30.40", true
	case KindArg:
		return "", false
	}
	return "7", true
}

func BenchmarkMatch(b *testing.B) {
	cases := []struct{ name, rule string }{
		{"eq", `[["http_x_canary","==","Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0"]]`},
		{"regex", `[["http_user_agent","~~","curl/[0-9]+"]]`},
		{"not-regex-absent", `[["arg_v","!","~~","^$"]]`},
		{"ipmatch", `[["remote_addr","ipmatch",["192.168.0.0/16","10.0.0.0/8","fd00::/8"]]]`},
		{"numeric", `[["server_port",">=",5]]`},
		{"nested", `[["uri","~~","^/api/"],["OR",["arg_a","==","1"],["remote_addr","ipmatch",["10.0.0.0/8"]]],["server_port","in",["7","8"]]]`},
	}
	var v Vars = benchVars{}
	for _, c := range cases {
		e := MustCompile(c.rule)
		if !e.Match(v) {
			b.Fatalf("%s: does not match", c.name)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Match(v)
			}
		})
	}
}
