package apisix

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// This file is the strict JSON decoder: a reflective walk over the raw
// document that rejects unknown and duplicate fields, nulls and wrong types
// with the JSON path of the offending field, and lets types fill defaults
// and check their own rules knowing which fields were present.

// pathDecoder is implemented by types that decode themselves (ID, Nodes,
// Plugins, PluginMetadata, Credential).
type pathDecoder interface {
	decodeJSON(path string, raw []byte) error
}

// checker is implemented by struct types that check their rules and fill
// APISIX's defaults once their fields are decoded. present lists the JSON
// keys the document set.
type checker interface {
	check(path string, present fieldSet) error
}

// fieldSet is the list of JSON keys present in an object.
type fieldSet []string

func (f fieldSet) has(name string) bool {
	for _, k := range f {
		if k == name {
			return true
		}
	}
	return false
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// decodeStrict decodes data into v (a pointer) strictly.
func decodeStrict(data []byte, v any) error {
	data = trimJSONSpace(data)
	if err := syntaxCheck(data); err != nil {
		return err
	}
	return decodeValue("", data, reflect.ValueOf(v).Elem())
}

// trimJSONSpace trims JSON whitespace (not Unicode spaces) at both ends.
func trimJSONSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isJSONSpace(b[i]) {
		i++
	}
	for j > i && isJSONSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// syntaxCheck reports malformed JSON with the offset of the error.
func syntaxCheck(data []byte) error {
	if json.Valid(data) {
		return nil
	}
	var x any
	err := json.Unmarshal(data, &x)
	if se, ok := err.(*json.SyntaxError); ok {
		return &FieldError{Rule: "invalid JSON at offset " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error()}
	}
	if err == nil {
		return &FieldError{Rule: "invalid JSON"}
	}
	return &FieldError{Rule: "invalid JSON: " + err.Error()}
}

func decodeValue(path string, raw []byte, v reflect.Value) error {
	if v.CanAddr() {
		if pd, ok := v.Addr().Interface().(pathDecoder); ok {
			return pd.decodeJSON(path, raw)
		}
	}
	if raw[0] == 'n' {
		if v.Kind() == reflect.Interface {
			v.SetZero()
			return nil
		}
		return &FieldError{Path: path, Rule: "must not be null"}
	}
	if v.Type() == rawMessageType {
		v.SetBytes(bytes.Clone(raw))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		n := reflect.New(v.Type().Elem())
		if err := decodeValue(path, raw, n.Elem()); err != nil {
			return err
		}
		v.Set(n)
		return nil
	case reflect.Struct:
		return decodeStruct(path, raw, v)
	case reflect.Slice:
		if raw[0] != '[' {
			return &FieldError{Path: path, Rule: "must be an array"}
		}
		n := countElems(raw)
		s := reflect.MakeSlice(v.Type(), n, n)
		err := forEachElem(raw, func(i int, val []byte) error {
			return decodeValue(indexPath(path, i), val, s.Index(i))
		})
		if err != nil {
			return err
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if raw[0] != '{' {
			return &FieldError{Path: path, Rule: "must be an object"}
		}
		m := reflect.MakeMap(v.Type())
		et := v.Type().Elem()
		err := forEachMember(raw, func(k string, val []byte) error {
			if m.MapIndex(reflect.ValueOf(k)).IsValid() {
				return &FieldError{Path: keyPath(path, k), Rule: "duplicate key"}
			}
			e := reflect.New(et).Elem()
			if err := decodeValue(keyPath(path, k), val, e); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
			return nil
		})
		if err != nil {
			return err
		}
		v.Set(m)
		return nil
	case reflect.String:
		if raw[0] != '"' {
			return &FieldError{Path: path, Rule: "must be a string"}
		}
		v.SetString(unquote(raw))
		return nil
	case reflect.Bool:
		switch raw[0] {
		case 't':
			v.SetBool(true)
		case 'f':
			v.SetBool(false)
		default:
			return &FieldError{Path: path, Rule: "must be a boolean"}
		}
		return nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := parseInteger(raw)
		if !ok {
			return &FieldError{Path: path, Rule: "must be an integer"}
		}
		if v.OverflowInt(n) {
			return &FieldError{Path: path, Rule: "integer out of range"}
		}
		v.SetInt(n)
		return nil
	case reflect.Float64:
		f, ok := parseNumber(raw)
		if !ok {
			return &FieldError{Path: path, Rule: "must be a number"}
		}
		v.SetFloat(f)
		return nil
	case reflect.Interface:
		var x any
		if err := json.Unmarshal(raw, &x); err != nil {
			return &FieldError{Path: path, Rule: err.Error()}
		}
		v.Set(reflect.ValueOf(x))
		return nil
	}
	return &FieldError{Path: path, Rule: "unsupported type " + v.Type().String()}
}

// structInfo maps JSON names to field indexes of a struct type.
type structInfo struct {
	fields map[string]int
}

var structInfos sync.Map // reflect.Type -> *structInfo

func structInfoOf(t reflect.Type) *structInfo {
	if si, ok := structInfos.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{fields: make(map[string]int, t.NumField())}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		si.fields[name] = i
	}
	actual, _ := structInfos.LoadOrStore(t, si)
	return actual.(*structInfo)
}

func decodeStruct(path string, raw []byte, v reflect.Value) error {
	if raw[0] != '{' {
		if path == "" {
			return &FieldError{Rule: "must be a JSON object"}
		}
		return &FieldError{Path: path, Rule: "must be an object"}
	}
	si := structInfoOf(v.Type())
	present := make(fieldSet, 0, 8)
	err := forEachMember(raw, func(k string, val []byte) error {
		idx, ok := si.fields[k]
		if !ok {
			return &FieldError{Path: keyPath(path, k), Rule: "unknown field"}
		}
		if present.has(k) {
			return &FieldError{Path: keyPath(path, k), Rule: "duplicate field"}
		}
		present = append(present, k)
		return decodeValue(joinPath(path, k), val, v.Field(idx))
	})
	if err != nil {
		return err
	}
	if c, ok := v.Addr().Interface().(checker); ok {
		return c.check(path, present)
	}
	return nil
}

// parseInteger parses a JSON number that must be integral. Like APISIX's
// JSON schema, 2.0 is an integer.
func parseInteger(raw []byte) (int64, bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// parseNumber parses a JSON number.
func parseNumber(raw []byte) (float64, bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// unquote decodes a valid JSON string literal.
func unquote(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	_ = json.Unmarshal(raw, &s) // raw is valid JSON: cannot fail
	return s
}

// The scanners below walk JSON already checked by json.Valid.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just after the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

func stringEnd(b []byte, i int) int {
	i++
	for i < len(b) {
		switch b[i] {
		case '\\':
			i += 2
			continue
		case '"':
			return i + 1
		}
		i++
	}
	return i
}

// forEachMember calls fn for each member of the JSON object raw, in order.
func forEachMember(raw []byte, fn func(key string, val []byte) error) error {
	i := skipWS(raw, 1)
	for i < len(raw) && raw[i] != '}' {
		ke := stringEnd(raw, i)
		key := unquote(raw[i:ke])
		i = skipWS(raw, ke)
		i = skipWS(raw, i+1) // ':'
		ve := valueEnd(raw, i)
		if err := fn(key, raw[i:ve]); err != nil {
			return err
		}
		i = skipWS(raw, ve)
		if i < len(raw) && raw[i] == ',' {
			i = skipWS(raw, i+1)
		}
	}
	return nil
}

// forEachElem calls fn for each element of the JSON array raw, in order.
func forEachElem(raw []byte, fn func(i int, val []byte) error) error {
	i := skipWS(raw, 1)
	n := 0
	for i < len(raw) && raw[i] != ']' {
		ve := valueEnd(raw, i)
		if err := fn(n, raw[i:ve]); err != nil {
			return err
		}
		n++
		i = skipWS(raw, ve)
		if i < len(raw) && raw[i] == ',' {
			i = skipWS(raw, i+1)
		}
	}
	return nil
}

func countElems(raw []byte) int {
	n := 0
	_ = forEachElem(raw, func(int, []byte) error { n++; return nil })
	return n
}
