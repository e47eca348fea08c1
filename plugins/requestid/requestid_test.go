package requestid_test

import (
	"regexp"
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/requestid"
)

func TestRequestID(t *testing.T) {
	e := plugintest.New(t)
	e.Route("uuid", "/uuid", `{"request-id":{}}`)
	e.Route("nano", "/nano", `{"request-id":{"header_name":"X-Trace","algorithm":"nanoid","include_in_response":false}}`)
	uuidRe := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

	r := e.Do("GET", "/uuid")
	var got plugintest.Echoed
	r.JSON(t, &got)
	id := r.Header.Get("X-Request-Id")
	if !uuidRe.MatchString(id) || len(got.Headers["X-Request-Id"]) != 1 || got.Headers["X-Request-Id"][0] != id {
		t.Errorf("uuid: response %q, upstream saw %v", id, got.Headers["X-Request-Id"])
	}
	if r2 := e.Do("GET", "/uuid"); r2.Header.Get("X-Request-Id") == id {
		t.Errorf("ids repeat")
	}
	r = e.Do("GET", "/uuid", "X-Request-Id: client-chosen")
	if r.Header.Get("X-Request-Id") != "client-chosen" {
		t.Errorf("client id replaced: %q", r.Header.Get("X-Request-Id"))
	}
	r = e.Do("GET", "/nano")
	r.JSON(t, &got)
	if r.Header.Get("X-Trace") != "" || len(got.Headers["X-Trace"]) != 1 || len(got.Headers["X-Trace"][0]) != 21 {
		t.Errorf("nanoid: resp %q upstream %v", r.Header.Get("X-Trace"), got.Headers["X-Trace"])
	}
	e.Rejected("bad", "/bad", `{"request-id":{"algorithm":"snowflake2"}}`, "algorithm")
}
