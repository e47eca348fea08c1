package apisix

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is the sentinel every validation error wraps: test with
// errors.Is(err, ErrInvalid). The etcd/Admin edge maps it to
// InvalidArgument / HTTP 400.
var ErrInvalid = errors.New("apisix: invalid object")

// ErrNoEndMarker is returned by LoadStandalone when the file does not end
// with APISIX's "#END" marker (APISIX refuses to load such a file).
var ErrNoEndMarker = errors.New("apisix: standalone: missing valid end flag #END at the end of the file")

// FieldError is the rule a field broke. Path is the JSON path of the field
// inside the object ("upstream.nodes[1].port"); Rule says what is required
// ("must be in 1..65535"). Messages never contain key material.
type FieldError struct {
	Path string
	Rule string
}

// Error returns "path: rule" (just the rule for the whole document).
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Rule
	}
	return e.Path + ": " + e.Rule
}

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// ValidationError is a FieldError of one object, naming its kind and id.
// Error() reads `apisix: route "1": upstream.nodes[1].port: must be in
// 1..65535`.
type ValidationError struct {
	Kind Kind
	// ID is the object's id, "" when not known (DecodeKind of a document
	// without id).
	ID    ID
	Field *FieldError
}

// Error returns `apisix: <kind> "<id>": <path>: <rule>`.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("apisix: ")
	b.WriteString(e.Kind.String())
	if e.ID != "" {
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(string(e.ID)))
	}
	b.WriteString(": ")
	b.WriteString(e.Field.Error())
	return b.String()
}

// Unwrap returns the FieldError (which unwraps to ErrInvalid).
func (e *ValidationError) Unwrap() error { return e.Field }

// fieldErr builds a FieldError for path.name.
func fieldErr(path, name, rule string) *FieldError {
	return &FieldError{Path: joinPath(path, name), Rule: rule}
}

// joinPath appends a field name to a JSON path.
func joinPath(path, name string) string {
	if name == "" {
		return path
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

// indexPath appends an array index to a JSON path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// keyPath appends a map key to a JSON path: .key when it is a plain
// identifier, ["key"] otherwise.
func keyPath(path, key string) string {
	plain := key != ""
	for i := 0; i < len(key) && plain; i++ {
		c := key[i]
		plain = c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	if plain {
		return joinPath(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// wrapObjectErr turns an error of decoding one object into a
// ValidationError naming kind and id.
func wrapObjectErr(k Kind, id ID, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &ValidationError{Kind: k, ID: id, Field: fe}
	}
	return &ValidationError{Kind: k, ID: id, Field: &FieldError{Rule: err.Error()}}
}
