package apisix

import (
	"bytes"
	"errors"
	"strings"
)

// DefaultPrefix is APISIX's default etcd key prefix.
const DefaultPrefix = "/apisix"

// ListenerPrefix is where meshagent's Listener objects live, outside
// APISIX's prefix: ListenerPrefix + <id>.
const ListenerPrefix = "/meshagent/listeners/"

// InitDirValue is the value of APISIX's directory placeholder keys.
const InitDirValue = "init_dir"

// initDirs is every directory APISIX's CLI creates a placeholder for
// (apisix/constants.lua HTTP_ETCD_DIRECTORY, a superset of the stream
// subsystem's list).
var initDirs = []string{
	"consumer_groups", "consumers", "global_rules", "plugin_configs", "plugin_metadata",
	"plugins", "protos", "routes", "secrets", "services", "ssls", "stream_routes", "upstreams",
}

// InitDirs returns the placeholder key of every APISIX directory under
// prefix, sorted: "<prefix>/<dir>/" (note the trailing slash). Their value
// is InitDirValue.
func InitDirs(prefix string) []string {
	out := make([]string, len(initDirs))
	for i, d := range initDirs {
		out[i] = prefix + "/" + d + "/"
	}
	return out
}

// ParseKey maps an etcd key to the kind and id of the object stored there:
// <prefix>/<dir>/<id> for APISIX kinds,
// <prefix>/consumers/<username>/credentials/<id> for credentials (id is
// then "<username>/credentials/<id>") and ListenerPrefix<id> for
// listeners. ok is false for every other key: placeholders
// (<prefix>/<dir>/), single items (<prefix>/plugins), <prefix>/gen_id,
// secrets, and sub-keys such as <prefix>/services/<id>/graphql_cost_decorations/...
func ParseKey(prefix, key string) (kind Kind, id string, ok bool) {
	if rest, found := strings.CutPrefix(key, ListenerPrefix); found {
		if rest == "" || strings.Contains(rest, "/") {
			return KindUnknown, "", false
		}
		return KindListener, rest, true
	}
	rest, found := strings.CutPrefix(key, prefix+"/")
	if !found {
		return KindUnknown, "", false
	}
	dir, id, found := strings.Cut(rest, "/")
	if !found || id == "" {
		return KindUnknown, "", false
	}
	kind = KindOfDir(dir)
	if kind == KindUnknown {
		return KindUnknown, "", false
	}
	if strings.Contains(id, "/") {
		if kind != KindConsumer {
			return KindUnknown, "", false
		}
		user, cred, found := strings.Cut(id, "/credentials/")
		if !found || user == "" || cred == "" || strings.Contains(user, "/") || strings.Contains(cred, "/") {
			return KindUnknown, "", false
		}
		return KindCredential, id, true
	}
	return kind, id, true
}

// Key is the etcd key of the object of kind with id under prefix; the
// inverse of ParseKey. For KindCredential, id is
// "<username>/credentials/<id>".
func Key(prefix string, kind Kind, id string) string {
	switch kind {
	case KindListener:
		return ListenerPrefix + id
	case KindCredential:
		return prefix + "/consumers/" + id
	}
	return prefix + "/" + kind.Dir() + "/" + id
}

// requiresID lists the kinds whose APISIX schema requires an id in the
// document itself (when no key supplies it).
func requiresID(k Kind) bool {
	switch k {
	case KindPluginConfig, KindGlobalRule, KindConsumerGroup, KindPluginMetadata:
		return true
	}
	return false
}

// decodeObject strictly decodes and validates one object of kind.
func decodeObject(kind Kind, data []byte) (Object, error) {
	obj := newObject(kind)
	if obj == nil {
		return nil, &FieldError{Rule: "unknown kind " + kind.String()}
	}
	if err := decodeStrict(data, obj); err != nil {
		return nil, wrapObjectErr(kind, obj.ObjectID(), err)
	}
	return obj, nil
}

// DecodeKind strictly decodes and validates one object of kind from its
// JSON document, filling APISIX's defaults. It returns a pointer to the
// kind's type (*Route, *Upstream, ...). Errors wrap ErrInvalid and read
// `apisix: <kind> "<id>": <path>: <rule>`.
func DecodeKind(kind Kind, data []byte) (any, error) {
	obj, err := decodeObject(kind, data)
	if err != nil {
		return nil, err
	}
	if requiresID(kind) && obj.ObjectID() == "" {
		return nil, wrapObjectErr(kind, "", &FieldError{Path: "id", Rule: "is required"})
	}
	return obj, nil
}

// Decode is a store.Decoder for the default prefix; see NewDecoder.
func Decode(key, value []byte) (any, error) {
	return decodeKey(DefaultPrefix, key, value)
}

// NewDecoder returns a store.Decoder for objects under prefix (and
// ListenerPrefix, and SecretPrefix whose values decode as *Secret). For keys ParseKey does not map, and for init_dir
// placeholders, it returns (nil, nil). Otherwise the value is strictly
// decoded and validated and the object's id is set from the key, as APISIX
// does when it loads from etcd (an id in the JSON is overwritten). A
// consumer's username must equal the key's id. The returned value is an
// Object (*Route, ...) and must not be mutated. Safe for concurrent use.
func NewDecoder(prefix string) func(key, value []byte) (any, error) {
	return func(key, value []byte) (any, error) { return decodeKey(prefix, key, value) }
}

func decodeKey(prefix string, key, value []byte) (any, error) {
	// meshagent SDS validation contexts (see secret.go).
	if bytes.HasPrefix(key, []byte(SecretPrefix)) {
		return DecodeSecret(string(key), value)
	}
	kind, id, ok := ParseKey(prefix, string(key))
	if !ok || bytes.Equal(value, []byte(InitDirValue)) {
		return nil, nil
	}
	if rule := keyIDRule(kind, id); rule != "" {
		return nil, wrapObjectErr(kind, ID(id), &FieldError{Path: "id", Rule: "key id " + rule})
	}
	obj, err := decodeObject(kind, value)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.ID = ID(id)
		}
		return nil, err
	}
	if c, isConsumer := obj.(*Consumer); isConsumer && c.Username != id {
		return nil, wrapObjectErr(kind, ID(id), &FieldError{Path: "username", Rule: "must equal the key's id"})
	}
	obj.setID(ID(id))
	return obj, nil
}

// keyIDRule says what is wrong with an id taken from a key, or "".
func keyIDRule(kind Kind, id string) string {
	switch kind {
	case KindCredential:
		if !validCredentialPath(id) {
			return "must be <username>/credentials/<id> of [a-zA-Z0-9-_.]"
		}
	case KindPluginMetadata:
		if id == "" {
			return "must not be empty"
		}
	case KindConsumer:
		if !usernameRe.MatchString(id) {
			return `must match ^[a-zA-Z0-9_\-]+$`
		}
	default:
		if !validIDString(id) {
			return "must be 1..64 characters of [a-zA-Z0-9-_.]"
		}
	}
	return ""
}
