package apisix

// Rules of the smaller kinds (schema_def.lua service, consumer,
// consumer_group, plugin_config, global_rule, stream_route, proto).

func (s *Service) check(path string, p fieldSet) error {
	if err := checkMeta(path, p, s.Name, s.Desc, s.Labels); err != nil {
		return err
	}
	if p.has("script") {
		if err := checkStrLen(joinPath(path, "script"), s.Script, 10, 102400); err != nil {
			return err
		}
	}
	if p.has("hosts") {
		return checkHostList(joinPath(path, "hosts"), s.Hosts)
	}
	return nil
}

func (c *Consumer) check(path string, p fieldSet) error {
	if !p.has("username") {
		return fieldErr(path, "username", "is required")
	}
	if err := checkStrLen(joinPath(path, "username"), c.Username, 1, maxNameLen); err != nil {
		return err
	}
	if !usernameRe.MatchString(c.Username) {
		return fieldErr(path, "username", `must match ^[a-zA-Z0-9_\-]+$`)
	}
	if err := checkDesc(path, c.Desc); err != nil {
		return err
	}
	return checkLabels(path, c.Labels)
}

func (c *ConsumerGroup) check(path string, p fieldSet) error {
	if err := checkMeta(path, p, c.Name, c.Desc, c.Labels); err != nil {
		return err
	}
	if !p.has("plugins") {
		return fieldErr(path, "plugins", "is required")
	}
	return nil
}

func (c *PluginConfig) check(path string, p fieldSet) error {
	if err := checkDesc(path, c.Desc); err != nil {
		return err
	}
	if err := checkLabels(path, c.Labels); err != nil {
		return err
	}
	if !p.has("plugins") {
		return fieldErr(path, "plugins", "is required")
	}
	return nil
}

func (g *GlobalRule) check(path string, p fieldSet) error {
	if !p.has("plugins") {
		return fieldErr(path, "plugins", "is required")
	}
	return nil
}

func (s *StreamRoute) check(path string, p fieldSet) error {
	if err := checkMeta(path, p, s.Name, s.Desc, s.Labels); err != nil {
		return err
	}
	if p.has("remote_addr") {
		if err := checkIP(joinPath(path, "remote_addr"), s.RemoteAddr); err != nil {
			return err
		}
	}
	if p.has("server_addr") {
		if err := checkIP(joinPath(path, "server_addr"), s.ServerAddr); err != nil {
			return err
		}
	}
	if p.has("server_port") {
		if err := checkIntRange(joinPath(path, "server_port"), s.ServerPort, 1, 65535); err != nil {
			return err
		}
	}
	if p.has("sni") {
		if err := checkHost(joinPath(path, "sni"), s.SNI); err != nil {
			return err
		}
	}
	return nil
}

func (s *StreamProtocol) check(path string, p fieldSet) error {
	if !p.has("name") {
		return fieldErr(path, "name", "is required")
	}
	if p.has("conf") && s.Conf[0] != '{' {
		return fieldErr(path, "conf", "must be an object")
	}
	return nil
}

func (l *StreamLogger) check(path string, p fieldSet) error {
	if p.has("name") && !p.has("conf") {
		return fieldErr(path, "conf", "is required with name")
	}
	if p.has("filter") && l.Filter[0] != '[' {
		return fieldErr(path, "filter", "must be an array")
	}
	if p.has("conf") && l.Conf[0] != '{' {
		return fieldErr(path, "conf", "must be an object")
	}
	return nil
}

func (pr *Proto) check(path string, p fieldSet) error {
	if err := checkMeta(path, p, pr.Name, pr.Desc, pr.Labels); err != nil {
		return err
	}
	if !p.has("content") {
		return fieldErr(path, "content", "is required")
	}
	return checkStrLen(joinPath(path, "content"), pr.Content, 1, 1024*1024)
}
