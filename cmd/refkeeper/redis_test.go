package main

import (
	"slices"
	"testing"
)

// TestRedisURLCommaForm: sentinels and cluster nodes listed in the host
// part, comma-separated, are every one an address, as with addr=
// parameters; user info, database and other parameters are kept, and the
// description used in messages holds no password.
func TestRedisURLCommaForm(t *testing.T) {
	tests := []struct {
		url          string
		addrs        []string
		master       string
		sentinelPass string
		password     string
		db           int
		where        string
	}{
		{"redis+sentinel://h1:26379,h2:26380?master_name=m", []string{"h1:26379", "h2:26380"}, "m", "", "", 0,
			`master "m" via sentinels h1:26379,h2:26380`},
		{"redis+sentinel://:s3cr%40t@h1:1,h2:2,h3:3/2?master_name=m&password=pw2&dial_timeout=1s", []string{"h1:1", "h2:2", "h3:3"}, "m", "s3cr@t", "pw2", 2,
			`master "m" via sentinels h1:1,h2:2,h3:3`},
		{"redis+sentinel://h1:1,h2:2?addr=h3:3&master_name=m", []string{"h1:1", "h2:2", "h3:3"}, "m", "", "", 0,
			`master "m" via sentinels h1:1,h2:2,h3:3`},
		{"redis+cluster://:pw@c1:1,c2:2", []string{"c1:1", "c2:2"}, "", "", "pw", 0, "cluster c1:1,c2:2"},
		{"redis://:pw@one:6379/3", []string{"one:6379"}, "", "", "pw", 3, "one:6379"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			o, err := redisOptions(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			addrs := slices.Clone(o.Addrs)
			slices.Sort(addrs)
			if !slices.Equal(addrs, tt.addrs) || o.MasterName != tt.master || o.SentinelPassword != tt.sentinelPass ||
				o.Password != tt.password || o.DB != tt.db {
				t.Fatalf("options = addrs %v master %q sentinel password %q password %q db %d", o.Addrs, o.MasterName, o.SentinelPassword, o.Password, o.DB)
			}
			if got := describeRedis(o); got != tt.where {
				t.Fatalf("describeRedis = %q, want %q", got, tt.where)
			}
		})
	}
}
