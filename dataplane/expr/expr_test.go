package expr

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// listVars adds multi-valued variables for the "has" operator.
type listVars struct {
	MapVars
	lists map[string][]string
}

func (l listVars) VarHas(v Var, elem string) bool {
	for _, e := range l.lists[v.String()] {
		if e == elem {
			return true
		}
	}
	return false
}

func TestMatch(t *testing.T) {
	vars := MapVars{
		"uri": "/api/v1/users", "host": "example.com", "request_method": "GET",
		"remote_addr": "10.1.2.3", "server_port": "8080", "http_x_user": "Alice",
		"arg_id": "42", "arg_empty": "", "arg_hex": "0x10", "arg_name": "jack",
		"cookie_session": "abc123", "http_x_v6": "2001:db8::5", "arg_f": " 2.5 ",
		"custom_var": "zzz",
	}
	cases := []struct {
		name string
		rule string
		want bool
	}{
		{"empty array matches", `[]`, true},
		{"null matches", `null`, true},
		{"eq string", `[["arg_name","==","jack"]]`, true},
		{"eq string mismatch", `[["arg_name","==","rose"]]`, false},
		{"eq missing var false", `[["arg_nope","==","x"]]`, false},
		{"eq number converts lhs", `[["arg_id","==",42]]`, true},
		{"eq number hex lhs", `[["arg_hex","==",16]]`, true},
		{"eq number non-numeric lhs false", `[["arg_name","==",1]]`, false},
		{"eq string rhs no conversion", `[["arg_id","==","42.0"]]`, false},
		{"eq null means absent", `[["arg_nope","==",null]]`, true},
		{"eq null present false", `[["arg_id","==",null]]`, false},
		{"eq bool never equals", `[["arg_id","==",true]]`, false},
		{"compat two-element form is eq", `[["arg_name","jack"]]`, true},
		{"compat form lowercases the value like Lua", `[["arg_name","JACK"]]`, true},
		{"compat form number becomes a string", `[["arg_id",42]]`, true},
		{"compat form number is not numeric", `[["arg_hex",16]]`, false},
		{"compat form bare operator has nil value", `[["arg_nope","=="]]`, true},
		{"ne string", `[["arg_name","~=","rose"]]`, true},
		{"ne string equal false", `[["arg_name","~=","jack"]]`, false},
		{"ne missing var true", `[["arg_nope","~=","x"]]`, true},
		{"ne number non-numeric lhs true", `[["arg_name","~=",1]]`, true},
		{"ne number equal false", `[["arg_id","~=",42]]`, false},
		{"gt", `[["arg_id",">",41]]`, true},
		{"gt equal false", `[["arg_id",">",42]]`, false},
		{"gt string rhs numeric", `[["arg_id",">","41"]]`, true},
		{"gt non-numeric rhs false", `[["arg_id",">","abc"]]`, false},
		{"gt missing false", `[["arg_nope",">",1]]`, false},
		{"gt lhs whitespace trimmed", `[["arg_f",">",2]]`, true},
		{"ge", `[["arg_id",">=",42]]`, true},
		{"lt", `[["arg_id","<",43]]`, true},
		{"lt false", `[["arg_id","<",42]]`, false},
		{"le", `[["arg_id","<=",42]]`, true},
		{"le non-numeric lhs false", `[["arg_name","<=",42]]`, false},
		{"regex unanchored search", `[["uri","~~","v1/u"]]`, true},
		{"regex anchored", `[["uri","~~","^/api/v[0-9]+/"]]`, true},
		{"regex no match", `[["uri","~~","^/v1"]]`, false},
		{"regex case sensitive", `[["http_x_user","~~","alice"]]`, false},
		{"regex missing var false", `[["arg_nope","~~",".*"]]`, false},
		{"not regex empty absent is true", `[["arg_nope","!","~~","^$"]]`, true},
		{"not regex empty present non-empty true", `[["arg_id","!","~~","^$"]]`, true},
		{"not regex empty present empty false", `[["arg_empty","!","~~","^$"]]`, false},
		{"regex ci", `[["http_x_user","~*","^ALICE$"]]`, true},
		{"regex ci missing false", `[["arg_nope","~*","x"]]`, false},
		{"op case insensitive", `[["arg_name","IN",["jack"]]]`, true},
		{"in", `[["arg_name","in",["rose","jack"]]]`, true},
		{"in mismatch", `[["arg_name","in",["rose"]]]`, false},
		{"in number element never equals string", `[["arg_id","in",[42]]]`, false},
		{"in missing false", `[["arg_nope","in",["x"]]]`, false},
		{"not in missing true", `[["arg_nope","!","in",["x"]]]`, true},
		{"has scalar var false", `[["arg_name","has","jack"]]`, false},
		{"ipmatch v4 cidr", `[["remote_addr","ipmatch",["10.0.0.0/8"]]]`, true},
		{"ipmatch single string", `[["remote_addr","ipmatch","10.1.2.3"]]`, true},
		{"ipmatch miss", `[["remote_addr","ipmatch",["192.168.0.0/16","::1"]]]`, false},
		{"ipmatch v6", `[["http_x_v6","ipmatch",["2001:db8::/32"]]]`, true},
		{"ipmatch non-ip value false", `[["arg_name","ipmatch",["0.0.0.0/0"]]]`, false},
		{"ipmatch missing false", `[["arg_nope","ipmatch",["0.0.0.0/0"]]]`, false},
		{"and implicit", `[["arg_name","==","jack"],["arg_id","==","42"]]`, true},
		{"and implicit one false", `[["arg_name","==","jack"],["arg_id","==","1"]]`, false},
		{"OR", `["OR",["arg_name","==","x"],["arg_id","==","42"]]`, true},
		{"OR all false", `["OR",["arg_name","==","x"],["arg_id","==","1"]]`, false},
		{"AND explicit", `["AND",["arg_name","==","jack"],["arg_id","==","42"]]`, true},
		{"!AND", `["!AND",["arg_name","==","jack"],["arg_id","==","42"]]`, false},
		{"!OR", `["!OR",["arg_name","==","x"],["arg_id","==","1"]]`, true},
		{"logic op lower case", `["or",["arg_name","==","x"],["arg_id","==","42"]]`, true},
		{"nested", `[["uri","~~","^/api"],["OR",["http_x_user","==","Bob"],["AND",["cookie_session","==","abc123"],["host","==","example.com"]]]]`, true},
		{"not eq", `[["arg_name","!","==","jack"]]`, false},
		{"other var by name", `[["custom_var","==","zzz"]]`, true},
		{"server_port numeric", `[["server_port",">=",8000]]`, true},
		{"method", `[["request_method","in",["GET","HEAD"]]]`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Compile(json.RawMessage(c.rule))
			if err != nil {
				t.Fatalf("Compile(%s): %v", c.rule, err)
			}
			if got := e.Match(vars); got != c.want {
				t.Fatalf("Match(%s) = %v, want %v", c.rule, got, c.want)
			}
		})
	}
}

func TestHasWithListVars(t *testing.T) {
	v := listVars{MapVars: MapVars{"http_x_tag": "a"}, lists: map[string][]string{"http_x_tag": {"a", "b"}}}
	if !MustCompile(`[["http_x_tag","has","b"]]`).Match(v) {
		t.Fatal("has b: want true")
	}
	if MustCompile(`[["http_x_tag","has","c"]]`).Match(v) {
		t.Fatal("has c: want false")
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name, rule, wantSub string
	}{
		{"not an array", `{"a":1}`, "must be an array"},
		{"bare rule not wrapped", `["arg_x","==","1"]`, "wrapped inside brackets"},
		{"OR too short", `["OR",["arg_x","==","1"]]`, "rule too short"},
		{"unknown operator", `[["arg_x","=~","1"]]`, "invalid operator '=~'"},
		{"bad not", `[["arg_x","?","==","1"]]`, "bad 'not' expression"},
		{"too long", `[["arg_x","!","==","1","2"]]`, "got 5 elements"},
		{"too short leaf", `[["arg_x"]]`, "got 1 elements"},
		{"bad regex", `[["arg_x","~~","(["]]`, "vars[0]: operator ~~: bad regular expression"},
		{"pcre only syntax", `[["arg_x","~~","(?<=a)b"]]`, "bad regular expression"},
		{"regex needs string", `[["arg_x","~~",1]]`, "needs a string"},
		{"in needs array", `[["arg_x","in","a"]]`, "needs an array"},
		{"bad cidr", `[["remote_addr","ipmatch",["10.0.0.0/33"]]]`, "ipmatch element 0"},
		{"bad ip", `[["remote_addr","ipmatch","nope"]]`, "invalid IP"},
		{"empty var name", `[["","==","1"]]`, "variable name"},
		{"nested position named", `[["arg_x","==","1"],["OR",["a","==","1"],["b","bogus","1"]]]`, "vars[1][2]"},
		{"mixed nested and scalar", `[["arg_x","==","1"],"x"]`, "vars[1]: must be an array"},
		{"trailing data", `[] []`, "trailing data"},
		{"bad json", `[`, "vars"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(json.RawMessage(c.rule))
			if err == nil {
				t.Fatalf("Compile(%s) succeeded, want error containing %q", c.rule, c.wantSub)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.wantSub) {
				t.Fatalf("error %q does not contain %q", err, c.wantSub)
			}
		})
	}
}

func TestParseVar(t *testing.T) {
	cases := []struct {
		in   string
		want Var
	}{
		{"uri", Var{Kind: KindURI}},
		{"host", Var{Kind: KindHost}},
		{"request_method", Var{Kind: KindRequestMethod}},
		{"remote_addr", Var{Kind: KindRemoteAddr}},
		{"server_port", Var{Kind: KindServerPort}},
		{"server_addr", Var{Kind: KindServerAddr}},
		{"scheme", Var{Kind: KindScheme}},
		{"request_uri", Var{Kind: KindRequestURI}},
		{"query_string", Var{Kind: KindQueryString}},
		{"http_X_Forwarded_For", Var{Kind: KindHeader, Name: "x-forwarded-for"}},
		{"arg_Page", Var{Kind: KindArg, Name: "Page"}},
		{"cookie_sid", Var{Kind: KindCookie, Name: "sid"}},
		{"http_", Var{Kind: KindOther, Name: "http_"}},
		{"upstream_addr", Var{Kind: KindOther, Name: "upstream_addr"}},
	}
	for _, c := range cases {
		if got := ParseVar(c.in); got != c.want {
			t.Errorf("ParseVar(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	if s := ParseVar("http_x_user").String(); s != "http_x_user" {
		t.Errorf("String() = %q", s)
	}
	if KindHeader.String() != "http_" || Kind(99).String() != "unknown" || OpIPMatch.String() != "ipmatch" {
		t.Error("String of enums")
	}
}

type fixedVars struct{ v string }

func (f fixedVars) Var(Var) (string, bool) { return f.v, true }

func TestMatchDoesNotAllocate(t *testing.T) {
	e := MustCompile(`[["uri","~~","^/api"],["OR",["http_x","==","1"],["arg_v","in",["/api/x","b"]]],["remote_addr","!","ipmatch",["10.0.0.0/8"]],["server_port",">",1]]`)
	var v Vars = fixedVars{v: "/api/x"}
	if n := testing.AllocsPerRun(100, func() { e.Match(v) }); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`[]`, `[["a","==","b"]]`, `["OR",["a","~~","x"],["b","!","in",["c"]]]`,
		`[["remote_addr","ipmatch",["10.0.0.0/8","::1"]]]`, `[["a",">",1.5]]`, `[[["a","==","b"]]]`, `["AND"]`, `[null]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Compile(json.RawMessage(s))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		e.Match(fixedVars{v: s})
		e.Match(MapVars{})
	})
}
