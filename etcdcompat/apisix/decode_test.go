package apisix

import (
	"errors"
	"strings"
	"testing"
)

// decodeCase is one document of a kind: accepted when wantErr is "",
// otherwise rejected with an error containing wantErr (which always names
// the field path).
type decodeCase struct {
	name    string
	kind    Kind
	doc     string
	wantErr string
}

const up = `"upstream":{"nodes":{"127.0.0.1:80":1}}`

var decodeCases = []decodeCase{
	// route: accepted
	{"route minimal upstream", KindRoute, `{"uri":"/a",` + up + `}`, ""},
	{"route uris plugins", KindRoute, `{"uris":["/a","/b*"],"plugins":{"proxy-rewrite":{"uri":"/x"}}}`, ""},
	{"route upstream_id int", KindRoute, `{"uri":"/a","upstream_id":12}`, ""},
	{"route service_id", KindRoute, `{"uri":"/a","service_id":"svc-1.a_b"}`, ""},
	{"route script", KindRoute, `{"uri":"/a","script":"return {a=1}"}`, ""},
	{"route full", KindRoute, `{"id":"r1","name":"n","desc":"d","labels":{"env":"prod"},"uri":"/a","priority":-3,
		"methods":["GET","PURGE"],"hosts":["*.foo.com","foo.com:8080","*"],"remote_addrs":["10.0.0.0/8","::1","fe80::/10","1.2.3.4"],
		"vars":[["arg_a","==","1"],["http_x","!","~~","^a+$"]],"filter_func":"function(vars) return true end",
		"timeout":{"connect":0.5,"send":1,"read":2},"plugin_config_id":"pc1","enable_websocket":true,"status":0,
		"create_time":1,"update_time":2,` + up + `}`, ""},
	{"route priority integral float", KindRoute, `{"uri":"/a","priority":2.0,` + up + `}`, ""},
	{"route host", KindRoute, `{"uri":"/a","host":"foo.com",` + up + `}`, ""},
	{"route remote_addr", KindRoute, `{"uri":"/a","remote_addr":"192.168.1.0/24",` + up + `}`, ""},
	// route: rejected
	{"route not object", KindRoute, `[1]`, "must be a JSON object"},
	{"route bad json", KindRoute, `{"uri":`, "invalid JSON"},
	{"route unknown field", KindRoute, `{"uri":"/a","urii":"/b",` + up + `}`, "urii: unknown field"},
	{"route nested unknown field", KindRoute, `{"uri":"/a","upstream":{"nodes":{"a:1":1},"keepalive":{}}}`, "upstream.keepalive: unknown field"},
	{"route duplicate field", KindRoute, `{"uri":"/a","uri":"/b",` + up + `}`, "uri: duplicate field"},
	{"route no uri", KindRoute, `{` + up + `}`, "uri: is required"},
	{"route uri and uris", KindRoute, `{"uri":"/a","uris":["/b"],` + up + `}`, "uris: only one of uri or uris"},
	{"route empty uri", KindRoute, `{"uri":"",` + up + `}`, "uri: length must be in 1..4096"},
	{"route long uri", KindRoute, `{"uri":"/` + strings.Repeat("a", 4096) + `",` + up + `}`, "uri: length must be in 1..4096"},
	{"route empty uris", KindRoute, `{"uris":[],` + up + `}`, "uris: must have at least 1 item"},
	{"route dup uris", KindRoute, `{"uris":["/a","/a"],` + up + `}`, "uris[1]: duplicate item"},
	{"route no target", KindRoute, `{"uri":"/a"}`, "one of plugins, upstream, upstream_id, service_id or script is required"},
	{"route script and plugins", KindRoute, `{"uri":"/a","script":"return {a=1}","plugins":{}}`, "script: script and plugins are mutually exclusive"},
	{"route script and plugin_config_id", KindRoute, `{"uri":"/a","script":"return {a=1}","plugin_config_id":"x"}`, "script: script and plugin_config_id"},
	{"route short script", KindRoute, `{"uri":"/a","script":"x"}`, "script: length must be in 10..102400"},
	{"route bad method", KindRoute, `{"uri":"/a","methods":["GET","get"],` + up + `}`, "methods[1]: must be one of GET"},
	{"route dup method", KindRoute, `{"uri":"/a","methods":["GET","GET"],` + up + `}`, "methods[1]: duplicate item"},
	{"route host and hosts", KindRoute, `{"uri":"/a","host":"a","hosts":["b"],` + up + `}`, "hosts: only one of host or hosts"},
	{"route bad host", KindRoute, `{"uri":"/a","host":"foo bar",` + up + `}`, "host: must match"},
	{"route bad hosts item", KindRoute, `{"uri":"/a","hosts":["ok.com","a*b"],` + up + `}`, "hosts[1]: must match"},
	{"route empty hosts", KindRoute, `{"uri":"/a","hosts":[],` + up + `}`, "hosts: must have at least 1 item"},
	{"route remote_addr and addrs", KindRoute, `{"uri":"/a","remote_addr":"1.1.1.1","remote_addrs":["1.1.1.1"],` + up + `}`, "remote_addrs: only one of remote_addr or remote_addrs"},
	{"route bad remote_addr", KindRoute, `{"uri":"/a","remote_addr":"300.1.1.1",` + up + `}`, "remote_addr: must be an IPv4 or IPv6 address or CIDR"},
	{"route bad cidr", KindRoute, `{"uri":"/a","remote_addrs":["10.0.0.0/33"],` + up + `}`, "remote_addrs[0]: must be an IPv4"},
	{"route priority float", KindRoute, `{"uri":"/a","priority":1.5,` + up + `}`, "priority: must be an integer"},
	{"route priority string", KindRoute, `{"uri":"/a","priority":"1",` + up + `}`, "priority: must be an integer"},
	{"route status 2", KindRoute, `{"uri":"/a","status":2,` + up + `}`, "status: must be 0 or 1"},
	{"route timeout missing read", KindRoute, `{"uri":"/a","timeout":{"connect":1,"send":1},` + up + `}`, "timeout.read: is required"},
	{"route timeout zero", KindRoute, `{"uri":"/a","timeout":{"connect":0,"send":1,"read":1},` + up + `}`, "timeout.connect: must be > 0"},
	{"route timeout negative", KindRoute, `{"uri":"/a","timeout":{"connect":1,"send":-1,"read":1},` + up + `}`, "timeout.send: must be > 0"},
	{"route filter_func", KindRoute, `{"uri":"/a","filter_func":"return function() end",` + up + `}`, "filter_func: must be Lua source"},
	{"route filter_func short", KindRoute, `{"uri":"/a","filter_func":"function",` + up + `}`, "filter_func: must be Lua source"},
	{"route name empty", KindRoute, `{"uri":"/a","name":"",` + up + `}`, "name: length must be in 1..256"},
	{"route name long", KindRoute, `{"uri":"/a","name":"` + strings.Repeat("n", 257) + `",` + up + `}`, "name: length must be in 1..256"},
	{"route desc long", KindRoute, `{"uri":"/a","desc":"` + strings.Repeat("d", 257) + `",` + up + `}`, "desc: length must be at most 256"},
	{"route label space", KindRoute, `{"uri":"/a","labels":{"k":"a b"},` + up + `}`, `labels.k: label value must match`},
	{"route label not string", KindRoute, `{"uri":"/a","labels":{"k":1},` + up + `}`, `labels.k: must be a string`},
	{"route bad id", KindRoute, `{"id":"a b","uri":"/a",` + up + `}`, "id: must be 1..64 characters"},
	{"route id zero", KindRoute, `{"id":0,"uri":"/a",` + up + `}`, "id: must be an integer >= 1"},
	{"route id long", KindRoute, `{"id":"` + strings.Repeat("a", 65) + `","uri":"/a",` + up + `}`, "id: must be 1..64"},
	{"route upstream_id bool", KindRoute, `{"uri":"/a","upstream_id":true}`, "upstream_id: must be a string or an integer"},
	{"route plugins not object", KindRoute, `{"uri":"/a","plugins":[]}`, "plugins: must be an object"},
	{"route plugin conf not object", KindRoute, `{"uri":"/a","plugins":{"limit-count":true}}`, "plugins.limit-count: plugin configuration must be an object"},
	{"route null field", KindRoute, `{"uri":"/a","upstream":null}`, "upstream: must not be null"},
	{"route vars not array", KindRoute, `{"uri":"/a","vars":{"a":1},` + up + `}`, "vars: must be an array"},
	{"route vars unwrapped", KindRoute, `{"uri":"/a","vars":["arg_a","==","1"],` + up + `}`, "vars: rule should be wrapped inside brackets"},
	{"route vars bad op", KindRoute, `{"uri":"/a","vars":[["arg_a","like","1"]],` + up + `}`, "vars[0][1]: invalid operator 'like'"},
	{"route vars bad not", KindRoute, `{"uri":"/a","vars":[["arg_a","?","==","1"]],` + up + `}`, "vars[0][1]: bad 'not' expression"},
	{"route vars bad regex", KindRoute, `{"uri":"/a","vars":[["arg_a","~~","(a"]],` + up + `}`, "vars[0][2]: invalid regex"},
	{"route vars short OR", KindRoute, `{"uri":"/a","vars":[["OR",["a","==","1"]]],` + up + `}`, "vars[0]: rule too short"},
	{"route vars bad ipmatch", KindRoute, `{"uri":"/a","vars":[["remote_addr","ipmatch",["1.2.3.x"]]],` + up + `}`, "vars[0][2]: invalid ip address"},
	{"route inline upstream bad port", KindRoute, `{"uri":"/a","upstream":{"nodes":[{"host":"a","port":80,"weight":1},{"host":"b","port":70000,"weight":1}]}}`, "upstream.nodes[1].port: must be in 1..65535"},

	// upstream: accepted
	{"upstream map nodes", KindUpstream, `{"nodes":{"127.0.0.1:80":1,"[::1]:8080":0,"example.com":3}}`, ""},
	{"upstream array nodes", KindUpstream, `{"nodes":[{"host":"127.0.0.1","port":80,"weight":1,"priority":-1,"metadata":{"zone":"a"}},{"host":"[::1]","weight":0}]}`, ""},
	{"upstream discovery", KindUpstream, `{"service_name":"svc","discovery_type":"dns","discovery_args":{"namespace_id":"x"}}`, ""},
	{"upstream chash vars", KindUpstream, `{"nodes":{"a:1":1},"type":"chash","key":"remote_addr"}`, ""},
	{"upstream chash arg", KindUpstream, `{"nodes":{"a:1":1},"type":"chash","key":"arg_user-id"}`, ""},
	{"upstream chash header", KindUpstream, `{"nodes":{"a:1":1},"type":"chash","hash_on":"header","key":"X-User"}`, ""},
	{"upstream chash consumer", KindUpstream, `{"nodes":{"a:1":1},"type":"chash","hash_on":"consumer"}`, ""},
	{"upstream full", KindUpstream, `{"nodes":{"a:1":1},"type":"least_conn","retries":0,"retry_timeout":0,"scheme":"grpcs",
		"pass_host":"rewrite","upstream_host":"b.com","timeout":{"connect":1,"send":1,"read":1},"keepalive_pool":{"size":1,"idle_timeout":0,"requests":1},
		"checks":{"active":{"type":"https","http_path":"/h","healthy":{"interval":2,"http_statuses":[200],"successes":1}},"passive":{"unhealthy":{"http_failures":0}}},
		"tls":{"client_cert_id":"c1","verify":true}}`, ""},
	{"upstream tls pair", KindUpstream, `{"nodes":{"a:1":1},"tls":{"client_cert":"{{CERT}}","client_key":"{{KEY}}"}}`, ""},
	// upstream: rejected
	{"upstream no nodes", KindUpstream, `{"type":"roundrobin"}`, "nodes: is required"},
	{"upstream service_name only", KindUpstream, `{"service_name":"svc"}`, "discovery_type: is required with service_name"},
	{"upstream nodes and discovery", KindUpstream, `{"nodes":{"a:1":1},"service_name":"s","discovery_type":"dns"}`, "nodes: only one of nodes or service_name"},
	{"upstream bad type", KindUpstream, `{"nodes":{"a:1":1},"type":"random"}`, "type: must be one of roundrobin"},
	{"upstream empty type", KindUpstream, `{"nodes":{"a:1":1},"type":""}`, "type: must be one of"},
	{"upstream chash no key", KindUpstream, `{"nodes":{"a:1":1},"type":"chash"}`, "key: is required when type is chash"},
	{"upstream chash bad vars key", KindUpstream, `{"nodes":{"a:1":1},"type":"chash","key":"http_x"}`, "key: must match"},
	{"upstream chash bad header key", KindUpstream, `{"nodes":{"a:1":1},"type":"chash","hash_on":"header","key":"x y"}`, "key: must match ^[a-zA-Z0-9-_]+$"},
	{"upstream bad hash_on", KindUpstream, `{"nodes":{"a:1":1},"hash_on":"ip"}`, "hash_on: must be one of"},
	{"upstream negative retries", KindUpstream, `{"nodes":{"a:1":1},"retries":-1}`, "retries: must be >= 0"},
	{"upstream negative retry_timeout", KindUpstream, `{"nodes":{"a:1":1},"retry_timeout":-0.5}`, "retry_timeout: must be >= 0"},
	{"upstream bad scheme", KindUpstream, `{"nodes":{"a:1":1},"scheme":"ftp"}`, "scheme: must be one of"},
	{"upstream bad pass_host", KindUpstream, `{"nodes":{"a:1":1},"pass_host":"keep"}`, "pass_host: must be one of pass, node, rewrite"},
	{"upstream rewrite no host", KindUpstream, `{"nodes":{"a:1":1},"pass_host":"rewrite"}`, "upstream_host: is required when pass_host is rewrite"},
	{"upstream map bad port", KindUpstream, `{"nodes":{"a:0":1}}`, `nodes["a:0"]: port must be in 1..65535`},
	{"upstream map bad weight", KindUpstream, `{"nodes":{"a:1":-1}}`, `nodes["a:1"]: weight must be an integer >= 0`},
	{"upstream map bad ipv6", KindUpstream, `{"nodes":{"[::1:80":1}}`, `nodes["[::1:80"]: malformed IPv6`},
	{"upstream nodes string", KindUpstream, `{"nodes":"a:1"}`, "nodes: must be an object"},
	{"upstream node no weight", KindUpstream, `{"nodes":[{"host":"a","port":1}]}`, "nodes[0].weight: is required"},
	{"upstream node no host", KindUpstream, `{"nodes":[{"port":1,"weight":1}]}`, "nodes[0].host: is required"},
	{"upstream node neg weight", KindUpstream, `{"nodes":[{"host":"a","weight":-2}]}`, "nodes[0].weight: must be >= 0"},
	{"upstream node bare ipv6", KindUpstream, `{"nodes":[{"host":"::1","port":80,"weight":1}]}`, "nodes[0].host: IPv6 address must be enclosed"},
	{"upstream node bad host", KindUpstream, `{"nodes":[{"host":"a/b","port":80,"weight":1}]}`, "nodes[0].host: must match"},
	{"upstream node port zero", KindUpstream, `{"nodes":[{"host":"a","port":0,"weight":1}]}`, "nodes[0].port: must be in 1..65535"},
	{"upstream node priority float", KindUpstream, `{"nodes":[{"host":"a","weight":1,"priority":0.5}]}`, "nodes[0].priority: must be an integer"},
	{"upstream tls cert no key", KindUpstream, `{"nodes":{"a:1":1},"tls":{"client_cert":"{{CERT}}"}}`, "tls.client_key: is required with client_cert"},
	{"upstream tls key no cert", KindUpstream, `{"nodes":{"a:1":1},"tls":{"client_key":"{{KEY}}"}}`, "tls.client_cert: is required with client_key"},
	{"upstream tls both forms", KindUpstream, `{"nodes":{"a:1":1},"tls":{"client_cert_id":"x","client_cert":"{{CERT}}","client_key":"{{KEY}}"}}`, "tls.client_cert_id: client_cert_id and client_cert+client_key are mutually exclusive"},
	{"upstream tls mismatched pair", KindUpstream, `{"nodes":{"a:1":1},"tls":{"client_cert":"{{CERT}}","client_key":"{{KEY2}}"}}`, "tls.client_key: must be a PEM encoded private key matching client_cert"},
	{"upstream tls garbage cert", KindUpstream, `{"nodes":{"a:1":1},"tls":{"client_cert":"` + strings.Repeat("x", 200) + `","client_key":"{{KEY}}"}}`, "tls.client_cert: must be a PEM encoded X.509 certificate"},
	{"upstream keepalive size 0", KindUpstream, `{"nodes":{"a:1":1},"keepalive_pool":{"size":0}}`, "keepalive_pool.size: must be >= 1"},
	{"upstream keepalive neg idle", KindUpstream, `{"nodes":{"a:1":1},"keepalive_pool":{"idle_timeout":-1}}`, "keepalive_pool.idle_timeout: must be >= 0"},
	{"upstream keepalive requests 0", KindUpstream, `{"nodes":{"a:1":1},"keepalive_pool":{"requests":0}}`, "keepalive_pool.requests: must be >= 1"},
	{"upstream checks no active", KindUpstream, `{"nodes":{"a:1":1},"checks":{"passive":{}}}`, "checks.active: is required"},
	{"upstream checks bad type", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"type":"udp"}}}`, "checks.active.type: must be one of http, https, tcp"},
	{"upstream checks interval 0", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"healthy":{"interval":0}}}}`, "checks.active.healthy.interval: must be >= 1"},
	{"upstream checks status range", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"unhealthy":{"http_statuses":[500,600]}}}}`, "checks.active.unhealthy.http_statuses[1]: must be in 200..599"},
	{"upstream checks dup status", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"healthy":{"http_statuses":[200,200]}}}}`, "checks.active.healthy.http_statuses[1]: duplicate item"},
	{"upstream checks successes 255", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"healthy":{"successes":255}}}}`, "checks.active.healthy.successes: must be in 1..254"},
	{"upstream checks passive neg", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{},"passive":{"unhealthy":{"timeouts":-1}}}}`, "checks.passive.unhealthy.timeouts: must be in 0..254"},
	{"upstream checks port", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"port":70000}}}`, "checks.active.port: must be in 1..65535"},
	{"upstream checks bad method", KindUpstream, `{"nodes":{"a:1":1},"checks":{"active":{"http_method":"FETCH"}}}`, "checks.active.http_method: must be one of"},
	{"upstream service_name empty", KindUpstream, `{"service_name":"","discovery_type":"dns"}`, "service_name: length must be in 1..256"},
	{"upstream discovery_args type", KindUpstream, `{"service_name":"s","discovery_type":"nacos","discovery_args":{"group_name":1}}`, "discovery_args.group_name: must be a string"},

	// service
	{"service ok", KindService, `{"name":"s","hosts":["a.com"],"plugins":{},"upstream":{"nodes":{"a:1":1}},"enable_websocket":false}`, ""},
	{"service upstream_id", KindService, `{"upstream_id":"u1"}`, ""},
	{"service bad hosts", KindService, `{"hosts":["a b"]}`, "hosts[0]: must match"},
	{"service dup hosts", KindService, `{"hosts":["a","a"]}`, "hosts[1]: duplicate item"},
	{"service unknown", KindService, `{"uri":"/a"}`, "uri: unknown field"},
	{"service inline upstream", KindService, `{"upstream":{"nodes":{"a:1":1},"type":"x"}}`, "upstream.type: must be one of"},

	// ssl
	{"ssl server sni", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.example.com"}`, ""},
	{"ssl server snis extra pairs", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","snis":["*.example.com","*"],"certs":["{{CERT2}}"],"keys":["{{KEY2}}"],
		"client":{"ca":"{{CERT}}","depth":0,"skip_mtls_uri_regex":["^/health$"]},"ssl_protocols":["TLSv1.2","TLSv1.3"],"status":1}`, ""},
	{"ssl client", KindSSL, `{"type":"client","cert":"{{CERT}}","key":"{{KEY}}"}`, ""},
	{"ssl secret refs", KindSSL, `{"cert":"$secret://vault/1/` + strings.Repeat("c", 120) + `","key":"$secret://vault/1/` + strings.Repeat("k", 60) + `","sni":"a.com"}`, ""},
	{"ssl no sni", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}"}`, "sni: is required for a server certificate"},
	{"ssl sni and snis", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","snis":["b.com"]}`, "snis: only one of sni or snis"},
	{"ssl bad sni", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a/b"}`, "sni: must match"},
	{"ssl bad snis", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","snis":["ok.com","a b"]}`, "snis[1]: must match"},
	{"ssl no cert", KindSSL, `{"key":"{{KEY}}","sni":"a.com"}`, "cert: is required"},
	{"ssl no key", KindSSL, `{"cert":"{{CERT}}","sni":"a.com"}`, "key: is required"},
	{"ssl short cert", KindSSL, `{"cert":"abc","key":"{{KEY}}","sni":"a.com"}`, "cert: length must be in 128..65536"},
	{"ssl bad key", KindSSL, `{"cert":"{{CERT}}","key":"` + strings.Repeat("k", 100) + `","sni":"a.com"}`, "key: must be a PEM encoded private key"},
	{"ssl mismatched key", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY2}}","sni":"a.com"}`, "key: must be a PEM encoded private key matching cert"},
	{"ssl certs keys count", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","certs":["{{CERT2}}"]}`, "keys: mismatched number of certs and keys"},
	{"ssl certs pair bad", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","certs":["{{CERT2}}"],"keys":["{{KEY}}"]}`, "keys[0]: must be a PEM encoded private key matching certs[0]"},
	{"ssl bad type", KindSSL, `{"type":"peer","cert":"{{CERT}}","key":"{{KEY}}"}`, "type: must be one of server, client"},
	{"ssl bad protocol", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","ssl_protocols":["TLSv1.0"]}`, "ssl_protocols[0]: must be one of"},
	{"ssl client no ca", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","client":{"depth":1}}`, "client.ca: is required"},
	{"ssl client bad ca", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","client":{"ca":"` + strings.Repeat("c", 200) + `"}}`, "client.ca: must be PEM encoded"},
	{"ssl client depth", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","client":{"ca":"{{CERT}}","depth":-1}}`, "client.depth: must be >= 0"},
	{"ssl client bad regex", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","client":{"ca":"{{CERT}}","skip_mtls_uri_regex":["(x"]}}`, "client.skip_mtls_uri_regex[0]: invalid regex"},
	{"ssl status", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","status":3}`, "status: must be 0 or 1"},
	{"ssl exptime unknown", KindSSL, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","exptime":1}`, "exptime: unknown field"},

	// plugin_config, global_rule, consumer_group
	{"plugin_config ok", KindPluginConfig, `{"id":"pc1","name":"x","plugins":{"cors":{}}}`, ""},
	{"plugin_config no plugins", KindPluginConfig, `{"id":"pc1"}`, "plugins: is required"},
	{"plugin_config no id", KindPluginConfig, `{"plugins":{}}`, "id: is required"},
	{"plugin_config plugin array", KindPluginConfig, `{"id":1,"plugins":{"cors":[]}}`, "plugins.cors: plugin configuration must be an object"},
	{"global_rule ok", KindGlobalRule, `{"id":1,"plugins":{"prometheus":{}}}`, ""},
	{"global_rule no plugins", KindGlobalRule, `{"id":1}`, "plugins: is required"},
	{"global_rule unknown", KindGlobalRule, `{"id":1,"plugins":{},"desc":"x"}`, "desc: unknown field"},
	{"consumer_group ok", KindConsumerGroup, `{"id":"g","plugins":{"limit-count":{"count":1}},"labels":{"a":"b"}}`, ""},
	{"consumer_group no plugins", KindConsumerGroup, `{"id":"g"}`, "plugins: is required"},

	// consumer, credential
	{"consumer ok", KindConsumer, `{"username":"jack_1-x","plugins":{"key-auth":{"key":"k"}},"group_id":"g"}`, ""},
	{"consumer no username", KindConsumer, `{"plugins":{}}`, "username: is required"},
	{"consumer bad username", KindConsumer, `{"username":"jack.x"}`, "username: must match"},
	{"consumer bad group_id", KindConsumer, `{"username":"j","group_id":"a b"}`, "group_id: must be 1..64"},
	{"credential ok", KindCredential, `{"id":"jack/credentials/key-1","plugins":{"key-auth":{"key":"k"}}}`, ""},
	{"credential two plugins", KindCredential, `{"plugins":{"key-auth":{},"basic-auth":{}}}`, "plugins: must hold at most 1 plugin"},
	{"credential bad id", KindCredential, `{"id":"jack/creds/x"}`, "id: must be 1..64"},

	// stream_route
	{"stream_route ok", KindStreamRoute, `{"server_addr":"127.0.0.1","server_port":9100,"remote_addr":"10.0.0.0/8","sni":"a.com",
		"upstream":{"nodes":{"a:1":1},"scheme":"tls"},"protocol":{"name":"redis","conf":{},"logger":[{"name":"syslog","conf":{},"filter":[]}]}}`, ""},
	{"stream_route bad port", KindStreamRoute, `{"server_port":0}`, "server_port: must be in 1..65535"},
	{"stream_route bad server_addr", KindStreamRoute, `{"server_addr":"host"}`, "server_addr: must be an IPv4"},
	{"stream_route protocol no name", KindStreamRoute, `{"protocol":{"conf":{}}}`, "protocol.name: is required"},
	{"stream_route logger no conf", KindStreamRoute, `{"protocol":{"name":"redis","logger":[{"name":"x"}]}}`, "protocol.logger[0].conf: is required with name"},

	// plugin_metadata, proto
	{"plugin_metadata ok", KindPluginMetadata, `{"id":"http-logger","log_format":{"host":"$host"}}`, ""},
	{"plugin_metadata no id", KindPluginMetadata, `{"log_format":{}}`, "id: is required"},
	{"plugin_metadata not object", KindPluginMetadata, `"x"`, "must be a JSON object"},
	{"proto ok", KindProto, `{"id":"p","content":"syntax = \"proto3\";"}`, ""},
	{"proto no content", KindProto, `{"id":"p"}`, "content: is required"},
	{"proto empty content", KindProto, `{"content":""}`, "content: length must be in 1..1048576"},

	// listener
	{"listener http", KindListener, `{"address":"0.0.0.0:15006","use_original_dst":true,"direction":"inbound",
		"filter_chains":[{"name":"a","match":{"destination_port":8080,"prefix_ranges":["10.0.0.0/8"],"transport_protocol":"tls","server_names":["a.com"]},
		"tls":{"ssl_id":"s1","require_client_certificate":true},"kind":"http","route_config":"inbound|8080"},
		{"name":"b","kind":"tcp","stream_route_id":"sr1"}]}`, ""},
	{"listener no address", KindListener, `{"filter_chains":[{"kind":"tcp","stream_route_id":"x"}]}`, "address: is required"},
	{"listener bad address", KindListener, `{"address":"15006","filter_chains":[{"kind":"tcp","stream_route_id":"x"}]}`, "address: must be host:port"},
	{"listener bad port", KindListener, `{"address":"127.0.0.1:99999","filter_chains":[{"kind":"tcp","stream_route_id":"x"}]}`, "address: port must be in 0..65535"},
	{"listener bad kind", KindListener, `{"address":":1","filter_chains":[{"kind":"udp"}]}`, "filter_chains[0].kind: must be one of http, tcp"},
	{"listener http no rc", KindListener, `{"address":":1","filter_chains":[{"kind":"http"}]}`, "filter_chains[0].route_config: is required when kind is http"},
	{"listener tcp no sr", KindListener, `{"address":":1","filter_chains":[{"kind":"tcp","route_config":"x"}]}`, "filter_chains[0].stream_route_id: is required when kind is tcp"},
	{"listener bad prefix", KindListener, `{"address":":1","filter_chains":[{"kind":"tcp","stream_route_id":"x","match":{"source_prefix_ranges":["x"]}}]}`, "filter_chains[0].match.source_prefix_ranges[0]: must be an IP address or CIDR"},
	{"listener tls no cert", KindListener, `{"address":":1","filter_chains":[{"kind":"tcp","stream_route_id":"x","tls":{}}]}`, "filter_chains[0].tls.ssl_id: one of ssl_id or secret_name is required"},
	{"listener bad direction", KindListener, `{"address":":1","direction":"in","filter_chains":[{"kind":"tcp","stream_route_id":"x"}]}`, "direction: must be one of"},
	{"listener dup chain name", KindListener, `{"address":":1","filter_chains":[{"name":"a","kind":"tcp","stream_route_id":"x"},{"name":"a","kind":"tcp","stream_route_id":"y"}]}`, "filter_chains[1].name: duplicates filter_chains[0]"},
}

func TestDecodeKind(t *testing.T) {
	if len(decodeCases) < 80 {
		t.Fatalf("only %d cases", len(decodeCases))
	}
	for _, tc := range decodeCases {
		t.Run(tc.kind.String()+"/"+tc.name, func(t *testing.T) {
			v, err := DecodeKind(tc.kind, []byte(expand(t, tc.doc)))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if o, ok := v.(Object); !ok || o.Kind() != tc.kind {
					t.Fatalf("decoded %T, want kind %v", v, tc.kind)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "apisix: "+tc.kind.String()) {
				t.Fatalf("error %q does not name the kind", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Fatalf("error leaks PEM material: %v", err)
			}
		})
	}
}
