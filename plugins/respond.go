package plugins

import "encoding/json"

// RespondMessage answers like APISIX's core.response.exit(status,
// {message = msg}): a JSON body {"message": msg} with a JSON content type.
// The filter then returns Stop.
func RespondMessage(c Ctx, status int, msg string) Status {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	c.SetResponseHeader("Content-Type", "application/json")
	c.Respond(status, b)
	return Stop
}
