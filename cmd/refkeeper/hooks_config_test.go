package main

import (
	"io"
	"testing"
)

func TestHookFlags(t *testing.T) {
	env := map[string]string{
		"REFKEEPER_GITLAB_HOOK_TOKEN":  "from-env-gitlab",
		"REFKEEPER_GITHUB_HOOK_SECRET": "from-env-github",
		"REFKEEPER_GITEA_HOOK_SECRET":  "from-env-gitea",
	}
	cfg, err := parseServeConfig([]string{"--github-hook-secret", "from-flag"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hooks.GitLabToken != "from-env-gitlab" || cfg.Hooks.GitHubSecret != "from-flag" || cfg.Hooks.GiteaSecret != "from-env-gitea" {
		t.Fatalf("hook secrets = %+v", cfg.Hooks)
	}
	cfg, err = parseServeConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.Hooks.GitLabToken != "" || cfg.Hooks.GitHubSecret != "" || cfg.Hooks.GiteaSecret != "" {
		t.Fatalf("default hook secrets = %+v, %v; want all empty (off)", cfg.Hooks, err)
	}
}
