package pktline

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestDecode: well-formed bodies split into their packets, special packets
// included; every malformed length is a SyntaxError at its offset.
func TestDecode(t *testing.T) {
	got, err := Decode([]byte("000ahello\n0000000100020008a\x00b\n0004"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Packet{Line("hello"), {Kind: Flush}, {Kind: Delim}, {Kind: ResponseEnd}, {Kind: Data, Data: []byte("a\x00b\n")}, {Kind: Data, Data: []byte{}}}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("packet %d = %v %q, want %v %q", i, got[i].Kind, got[i].Data, want[i].Kind, want[i].Data)
		}
	}
	if got[0].Text() != "hello" {
		t.Errorf("Text = %q", got[0].Text())
	}
	for body, offset := range map[string]int{
		"00":              0,
		"0000zz":          4,
		"0003":            0,
		"0009abc":         0,
		"fff1" + "x":      0,
		"0000" + "-001":   4,
		"0005a" + "00 6x": 5,
	} {
		_, err := Decode([]byte(body))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != offset {
			t.Errorf("Decode(%q) = %v, want a SyntaxError at %d", body, err, offset)
		}
	}
}

// TestEncode: what Decode reads, Encode writes back byte for byte; a data
// packet too long for its length is refused.
func TestEncode(t *testing.T) {
	body := "000ahello\n000100000002000fwant x y\x00z\n"
	packets, err := Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Encode(packets)
	if err != nil || string(out) != body {
		t.Fatalf("Encode = %q, %v; want %q", out, err, body)
	}
	if _, err := Encode([]Packet{{Kind: Data, Data: []byte(strings.Repeat("x", MaxLen-3))}}); err == nil {
		t.Fatal("a packet over MaxLen was written")
	}
	if out, err := Encode([]Packet{{Kind: Data, Data: []byte(strings.Repeat("x", MaxLen-4))}}); err != nil || string(out[:4]) != "fff0" {
		t.Fatalf("the longest packet: %q…, %v", out[:4], err)
	}
}

// FuzzDecode: whatever the body, Decode either refuses it or splits it into
// packets that Encode writes back as the same bytes (but for the case of
// hex digits in lengths: git reads both, writes lower case).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "0000", "0001", "0002", "000ahello\n0000", "0004", "00", "zzzz", "0005\x00", "fff0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		packets, err := Decode(body)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset >= len(body) {
				t.Fatalf("Decode(%q) = %v", body, err)
			}
			return
		}
		out, err := Encode(packets)
		if err != nil || len(out) != len(body) {
			t.Fatalf("Encode(Decode(%q)) = %q, %v", body, out, err)
		}
		again, err := Decode(out)
		if err != nil || len(again) != len(packets) {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v, %v", body, again, err)
		}
		for i := range again {
			if again[i].Kind != packets[i].Kind || !bytes.Equal(again[i].Data, packets[i].Data) {
				t.Fatalf("packet %d of %q came back as %v %q", i, body, again[i].Kind, again[i].Data)
			}
		}
	})
}
