package apisix

import (
	"strings"
	"testing"
)

func TestParseVars(t *testing.T) {
	cases := []struct {
		vars    string
		wantErr string
	}{
		{`[]`, ""},
		{`[["arg_a","==","1"]]`, ""},
		{`[["arg_a","1"]]`, ""}, // compat: [var, value] means ==
		{`[["arg_a","IN",["a","b"]]]`, ""},
		{`[["http_x","!","~*","^A"]]`, ""},
		{`[["arg_n",">",10],["arg_n","<=",20.5]]`, ""},
		{`[["remote_addr","ipmatch","10.0.0.0/8"]]`, ""},
		{`[["remote_addr","ipmatch",["::1","192.168.0.1"]]]`, ""},
		{`[["cookie_a","has","x"]]`, ""},
		{`[["arg_a","==",null]]`, ""},
		{`["OR",["arg_a","==","1"],["arg_b","==","2"]]`, ""},
		{`["or",["arg_a","==","1"],["arg_b","==","2"]]`, ""},
		{`[["!AND",["arg_a","==","1"],["AND",["x","~=","y"],["z",">=",1]]]]`, ""},
		{`[[["arg_a","==","1"]]]`, ""},
		{`["arg_a","==","1"]`, "vars: rule should be wrapped inside brackets"},
		{`{"a":1}`, "vars: must be an array"},
		{`"x"`, "vars: must be an array"},
		{`[["arg_a","like","1"]]`, "vars[0][1]: invalid operator 'like'"},
		{`[["arg_a","!","like","1"]]`, "vars[0][2]: invalid operator 'like'"},
		{`[["arg_a","not","==","1"]]`, "vars[0][1]: bad 'not' expression"},
		{`[["arg_a"]]`, "vars[0]: invalid expression"},
		{`[[]]`, "vars[0]: rule too short"},
		{`[[1,"==","1"]]`, "vars[0][0]: invalid expression: variable name must be a string"},
		{`[["a",1,"1"]]`, "vars[0][1]: invalid operator: must be a string"},
		{`[["a","~~","[z-a]"]]`, "vars[0][2]: invalid regex"},
		{`[["a","~*",5]]`, "vars[0][2]: regex must be a string"},
		{`[["a","ipmatch",""]]`, "vars[0][2]: invalid ip address"},
		{`[["a","ipmatch",[]]]`, "vars[0][2]: invalid ip address"},
		{`[["a","ipmatch",["1.1.1.1","x"]]]`, "vars[0][2]: invalid ip address at item 1"},
		{`["OR",["a","==","1"]]`, "vars: rule too short"},
		{`["OR",["a","==","1"],"b"]`, "vars[2]: invalid expression: must be an array"},
		{`[["a","==","1"],"b"]`, "vars[1]: invalid expression: must be an array"},
		{`[["OR",["a","==","1"],["b","=","2"]]]`, "vars[0][2][1]: invalid operator '='"},
	}
	for _, tc := range cases {
		e, err := ParseVars([]byte(tc.vars))
		if tc.wantErr == "" {
			if err != nil || e == nil {
				t.Errorf("ParseVars(%s): %v", tc.vars, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseVars(%s) error = %v, want %q", tc.vars, err, tc.wantErr)
		}
	}
}

func TestParseVarsTree(t *testing.T) {
	e, err := ParseVars([]byte(`["!OR",["arg_a","!","~*","^x$"],["remote_addr","ipmatch","10.1.2.3/8"],["arg_b","v"]]`))
	if err != nil {
		t.Fatal(err)
	}
	if !e.IsGroup() || e.Logic != LogicNotOr || e.Logic.String() != "!OR" || len(e.Children) != 3 {
		t.Fatalf("group %+v", e)
	}
	a, ip, compat := e.Children[0], e.Children[1], e.Children[2]
	if a.Var != "arg_a" || !a.Not || a.Op != "~*" || a.Regex == nil || !a.Regex.MatchString("X") {
		t.Fatalf("leaf a %+v", a)
	}
	if len(ip.Prefixes) != 1 || ip.Prefixes[0].String() != "10.0.0.0/8" {
		t.Fatalf("ipmatch %+v", ip.Prefixes)
	}
	if compat.Op != "==" || compat.Value != "v" {
		t.Fatalf("compat leaf %+v", compat)
	}
}
