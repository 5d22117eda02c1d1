package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yml these tests read.
type composeFile struct {
	Services map[string]struct {
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
		Volumes     []string          `yaml:"volumes"`
		StopGrace   string            `yaml:"stop_grace_period"`
		Configs     []struct {
			Source string `yaml:"source"`
		} `yaml:"configs"`
	} `yaml:"services"`
	Configs map[string]struct {
		Content string `yaml:"content"`
	} `yaml:"configs"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// composeDefault is ${NAME:-default} and ${NAME:?message} of compose's
// interpolation, with nothing set.
var composeDefault = regexp.MustCompile(`\$\{[A-Z_]+(?::-([^}]*)|:\?[^}]*)?\}`)

// TestComposeScales checks what scaling docker-compose.yml needs without a
// Docker engine: the scaled service publishes no host port (two replicas
// cannot both have it), one balancer does and forwards to the service, every
// replica gets the secrets it must share from files, not from the
// environment, its settings make a valid serve configuration with a fetch
// URL of its own, and compose waits longer than the shutdown budget before
// SIGKILL.
func TestComposeScales(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	rk, ok := c.Services["refkeeper"]
	if !ok {
		t.Fatal("no refkeeper service")
	}
	if len(rk.Ports) != 0 {
		t.Fatalf("the scaled refkeeper service publishes host ports %v", rk.Ports)
	}
	var balancers []string
	for name, s := range c.Services {
		if len(s.Ports) == 0 {
			continue
		}
		balancers = append(balancers, name)
		forwards := false
		for _, cfg := range s.Configs {
			forwards = forwards || strings.Contains(c.Configs[cfg.Source].Content, "refkeeper:8080")
		}
		if !forwards {
			t.Errorf("service %s publishes %v but does not forward to refkeeper:8080", name, s.Ports)
		}
	}
	if len(balancers) != 1 {
		t.Fatalf("services publishing ports: %v, want one balancer", balancers)
	}

	// The environment as the container sees it, with compose's defaults,
	// and the secret files as they are mounted.
	env := map[string]string{}
	dir := t.TempDir()
	for k, v := range rk.Environment {
		env[k] = composeDefault.ReplaceAllString(v, "$1")
	}
	for _, k := range []string{"REFKEEPER_API_TOKENS", "REFKEEPER_FETCH_TOKEN_KEYS"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s is in the environment: it belongs in a secret file", k)
		}
		path := env[k+"_FILE"]
		name := strings.TrimPrefix(path, "/run/secrets/")
		if name == path || c.Secrets[name].File == "" || !slices.Contains(rk.Secrets, name) {
			t.Fatalf("%s_FILE = %q: want /run/secrets/<a secret of the service from a file>", k, path)
		}
		local := filepath.Join(dir, name)
		if err := os.WriteFile(local, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env[k+"_FILE"] = local
	}
	cfg, err := parseServeConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("the service's environment is no valid configuration: %v", err)
	}
	if cfg.RedisURL == "" || len(cfg.Tokens) == 0 || len(cfg.FetchTokenKeys) == 0 || len(rk.Volumes) == 0 {
		t.Fatalf("replicas would not share Redis, tokens, keys and repositories: %+v, volumes %v", cfg, rk.Volumes)
	}
	if base, guessed, err := cfg.fetchBase(func() (string, error) { return "container-id", nil }); err != nil || guessed {
		t.Fatalf("fetch_url would be %q (guessed %v, %v): set REFKEEPER_FETCH_URL", base, guessed, err)
	}
	grace, err := time.ParseDuration(rk.StopGrace)
	if err != nil || grace <= cfg.ShutdownTimeout {
		t.Fatalf("stop_grace_period %q (%v) must exceed the shutdown budget %v", rk.StopGrace, err, cfg.ShutdownTimeout)
	}
}
