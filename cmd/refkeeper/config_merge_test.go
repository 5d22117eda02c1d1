package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/gitops"
)

func TestServeConfigMergeIdentity(t *testing.T) {
	c, err := parseServeConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil || c.MergeIdentity != gitops.DefaultIdentity || c.MergeIdentity.String() != "refkeeper <refkeeper@localhost>" {
		t.Fatalf("default merge identity = %v, %v", c.MergeIdentity, err)
	}
	e := env(map[string]string{"REFKEEPER_MERGE_IDENTITY": "CI <ci@example.org>"})
	if c, err := parseServeConfig(nil, e, &bytes.Buffer{}); err != nil || c.MergeIdentity != (gitops.Identity{Name: "CI", Email: "ci@example.org"}) {
		t.Fatalf("merge identity from the environment = %v, %v", c.MergeIdentity, err)
	}
	c, err = parseServeConfig([]string{"--merge-identity", "Bot <bot@example.org>"}, e, &bytes.Buffer{})
	if err != nil || c.MergeIdentity.String() != "Bot <bot@example.org>" {
		t.Fatalf("flag over environment = %v, %v", c.MergeIdentity, err)
	}
	for _, bad := range []string{"nobody", "x <y", "x. <a@b>"} {
		_, err := parseServeConfig([]string{"--merge-identity", bad}, env(nil), &bytes.Buffer{})
		var usage *usageError
		if !errors.As(err, &usage) || !strings.Contains(usage.msg, "merge-identity") || strings.Contains(usage.msg, "\n") {
			t.Errorf("--merge-identity %q: %v, want one line naming the flag", bad, err)
		}
		_, err = parseServeConfig(nil, env(map[string]string{"REFKEEPER_MERGE_IDENTITY": bad}), &bytes.Buffer{})
		if !errors.As(err, &usage) || !strings.Contains(usage.msg, "REFKEEPER_MERGE_IDENTITY") {
			t.Errorf("REFKEEPER_MERGE_IDENTITY=%q: %v, want a usage error naming it", bad, err)
		}
	}
}
