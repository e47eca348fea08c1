package apisix

import "strconv"

// Health check defaults of schema_def.lua health_checker_active/passive.
// Sub-objects absent from the document are created with their defaults so
// the data plane never has to know APISIX's defaults.

func (c *Checks) check(path string, p fieldSet) error {
	if !p.has("active") {
		return fieldErr(path, "active", "is required when checks is set")
	}
	return nil
}

func (a *ActiveCheck) check(path string, p fieldSet) error {
	if err := defaultEnum(path, p, "type", &a.Type, "http", "http", "https", "tcp"); err != nil {
		return err
	}
	if !p.has("timeout") {
		a.Timeout = 1
	}
	if !p.has("concurrency") {
		a.Concurrency = 10
	}
	if p.has("host") {
		if err := checkHost(joinPath(path, "host"), a.Host); err != nil {
			return err
		}
	}
	if p.has("port") {
		if err := checkIntRange(joinPath(path, "port"), a.Port, 1, 65535); err != nil {
			return err
		}
	}
	if err := defaultEnum(path, p, "http_method", &a.HTTPMethod, "GET", httpMethods...); err != nil {
		return err
	}
	if !p.has("http_path") {
		a.HTTPPath = "/"
	}
	if !p.has("https_verify_certificate") {
		t := true
		a.HTTPSVerifyCertificate = &t
	}
	if p.has("req_headers") && len(a.ReqHeaders) == 0 {
		return fieldErr(path, "req_headers", "must have at least 1 item")
	}
	if a.Healthy == nil {
		a.Healthy = &ActiveHealthy{}
		_ = a.Healthy.check("", nil) // fills defaults; cannot fail
	}
	if a.Unhealthy == nil {
		a.Unhealthy = &ActiveUnhealthy{}
		_ = a.Unhealthy.check("", nil)
	}
	return nil
}

func (h *ActiveHealthy) check(path string, p fieldSet) error {
	if err := intDefault(path, p, "interval", &h.Interval, 1, 1, 1<<31-1); err != nil {
		return err
	}
	if err := statusesDefault(path, p, &h.HTTPStatuses, 200, 302); err != nil {
		return err
	}
	return intDefault(path, p, "successes", &h.Successes, 2, 1, 254)
}

func (u *ActiveUnhealthy) check(path string, p fieldSet) error {
	if err := intDefault(path, p, "interval", &u.Interval, 1, 1, 1<<31-1); err != nil {
		return err
	}
	if err := statusesDefault(path, p, &u.HTTPStatuses, 429, 404, 500, 501, 502, 503, 504, 505); err != nil {
		return err
	}
	if err := intDefault(path, p, "http_failures", &u.HTTPFailures, 5, 1, 254); err != nil {
		return err
	}
	if err := intDefault(path, p, "tcp_failures", &u.TCPFailures, 2, 1, 254); err != nil {
		return err
	}
	return intDefault(path, p, "timeouts", &u.Timeouts, 3, 1, 254)
}

func (c *PassiveCheck) check(path string, p fieldSet) error {
	if err := defaultEnum(path, p, "type", &c.Type, "http", "http", "https", "tcp"); err != nil {
		return err
	}
	if c.Healthy == nil {
		c.Healthy = &PassiveHealthy{}
		_ = c.Healthy.check("", nil)
	}
	if c.Unhealthy == nil {
		c.Unhealthy = &PassiveUnhealthy{}
		_ = c.Unhealthy.check("", nil)
	}
	return nil
}

func (h *PassiveHealthy) check(path string, p fieldSet) error {
	if err := statusesDefault(path, p, &h.HTTPStatuses,
		200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308); err != nil {
		return err
	}
	return intDefault(path, p, "successes", &h.Successes, 5, 0, 254)
}

func (u *PassiveUnhealthy) check(path string, p fieldSet) error {
	if err := statusesDefault(path, p, &u.HTTPStatuses, 429, 500, 503); err != nil {
		return err
	}
	if err := intDefault(path, p, "tcp_failures", &u.TCPFailures, 2, 0, 254); err != nil {
		return err
	}
	if err := intDefault(path, p, "timeouts", &u.Timeouts, 7, 0, 254); err != nil {
		return err
	}
	return intDefault(path, p, "http_failures", &u.HTTPFailures, 5, 0, 254)
}

// intDefault fills *v with def when field is absent, else checks lo..hi.
func intDefault(path string, p fieldSet, field string, v *int, def, lo, hi int) error {
	if !p.has(field) {
		*v = def
		return nil
	}
	if *v < lo || *v > hi {
		if hi == 1<<31-1 {
			return fieldErr(path, field, "must be >= "+strconv.Itoa(lo))
		}
		return fieldErr(path, field, "must be in "+strconv.Itoa(lo)+".."+strconv.Itoa(hi))
	}
	return nil
}

// statusesDefault fills http_statuses with def when absent, else checks
// minItems 1, uniqueItems and 200..599.
func statusesDefault(path string, p fieldSet, v *[]int, def ...int) error {
	if !p.has("http_statuses") {
		*v = def
		return nil
	}
	fp := joinPath(path, "http_statuses")
	if len(*v) == 0 {
		return &FieldError{Path: fp, Rule: "must have at least 1 item"}
	}
	if i := firstDup(*v); i >= 0 {
		return &FieldError{Path: indexPath(fp, i), Rule: "duplicate item"}
	}
	for i, s := range *v {
		if err := checkIntRange(indexPath(fp, i), s, 200, 599); err != nil {
			return err
		}
	}
	return nil
}
