package apisix

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// envRe is APISIX's ${{VAR}} / ${{VAR:=default}} syntax (apisix/cli/file.lua
// var_sub: %$%{%{%s*([%w_]+[%:%=]?.-)%s*%}%}).
var envRe = regexp.MustCompile(`(?s)\$\{\{\s*([A-Za-z0-9_]+[:=]?.*?)\s*\}\}`)

// ExpandEnv substitutes ${{VAR}} and ${{VAR:=default}} in the text of a
// standalone file the way APISIX does before parsing it, so YAML decides
// the type ("${{PORT}}" stays a string, ${{PORT}} becomes a number). A
// variable that lookup does not know and that has no default is an error.
func ExpandEnv(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var missing string
	out := envRe.ReplaceAllFunc(data, func(m []byte) []byte {
		inner := string(envRe.FindSubmatch(m)[1])
		name, def, hasDef := strings.Cut(inner, ":=")
		if v, ok := lookup(name); ok {
			return []byte(v)
		}
		if hasDef {
			return []byte(strings.TrimSpace(def))
		}
		if missing == "" {
			missing = name
		}
		return nil
	})
	if missing != "" {
		return nil, fmt.Errorf("apisix: standalone: can't find environment variable %s", missing)
	}
	return out, nil
}

// Marshal encodes obj as the JSON to store for it and checks the result
// passes the validation a store write applies (DecodeKind), so producers
// such as the xDS translation find a bad object before writing it. Note
// that Go's encoding omits empty collections ("plugins": {}) and zero
// values, which then mean APISIX's defaults.
func Marshal(obj Object) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("apisix: encode %v: %w", obj.Kind(), err)
	}
	if _, err := decodeObject(obj.Kind(), b); err != nil {
		return nil, err
	}
	return b, nil
}

// KeyOf is the etcd key of obj under prefix.
func KeyOf(prefix string, obj Object) string {
	return Key(prefix, obj.Kind(), string(obj.ObjectID()))
}
