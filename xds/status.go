package xds

import (
	"time"
)

// State is the sync state of one resource type.
type State int

// The states of a resource type, in the order they are reached.
const (
	// StateIdle: nothing requested yet (e.g. no EDS cluster known).
	StateIdle State = iota
	// StateRequested: a request was sent, no response applied yet.
	StateRequested
	// StateACKed: the last response was applied and ACKed.
	StateACKed
	// StateNACKed: the last response was rejected; the config from the
	// last ACKed response stays in force.
	StateNACKed
)

// String is the state name shown by /xds_status.
func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateRequested:
		return "requested"
	case StateACKed:
		return "acked"
	case StateNACKed:
		return "nacked"
	}
	return "unknown"
}

// MarshalText encodes the state by name (for JSON status output).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TypeStatus is the sync status of one resource type.
type TypeStatus struct {
	// TypeURL is the resource type's URL.
	TypeURL string `json:"type_url"`
	// State is where the type's protocol exchange stands.
	State State `json:"state"`
	// Version is the version_info of the last ACKed response (delta: its
	// system_version_info, or the nonce when the server sets none).
	Version string `json:"version"`
	// Nonce is the nonce of the last response received.
	Nonce string `json:"nonce"`
	// LastACK and LastNACK are when a response was last applied and last
	// rejected (zero: never).
	LastACK  time.Time `json:"last_ack,omitzero"`
	LastNACK time.Time `json:"last_nack,omitzero"`
	// NACKMessage is the error_detail of the last NACK.
	NACKMessage string `json:"last_nack_message,omitempty"`
	// ACKs and NACKs count the responses applied and rejected.
	ACKs  int64 `json:"acks"`
	NACKs int64 `json:"nacks"`
	// Resources is how many resources of the type are applied.
	Resources int `json:"resources"`
	// Subscribed lists the names subscribed (named types).
	Subscribed []string `json:"subscribed,omitempty"`
	// WildcardSubs reports a wildcard subscription (CDS and LDS).
	WildcardSubs bool `json:"wildcard"`
}

// Status is the client's whole sync status.
type Status struct {
	// Server is the control plane's address.
	Server string `json:"server"`
	// Mode is "sotw" or "delta".
	Mode string `json:"mode"`
	// NodeID is the node id sent to the control plane.
	NodeID string `json:"node_id"`
	// Connected reports an open stream that has received a response.
	Connected bool `json:"connected"`
	// Ready reports that the first complete config was applied.
	Ready bool `json:"ready"`
	// Reconnect counts the streams that ended with an error.
	Reconnect int64 `json:"reconnects"`
	// LastError is the error that ended the last failed stream.
	LastError string `json:"last_error,omitempty"`
	// Types holds one entry per resource type, in translate.Kinds order.
	Types []TypeStatus `json:"types"`
}
