package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// KeyError is a key that is not spelled as the type names it, or that
// appears twice in one object. At says where ("tokens[2]"); the key is a
// field or entry name, never a value.
type KeyError struct {
	At     string
	Key    string
	Reason string
}

func (e *KeyError) Error() string {
	if e.At == "" {
		return fmt.Sprintf("key %q %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("%s: key %q %s", e.At, e.Key, e.Reason)
}

// CheckKeys walks raw, a JSON document that decodes into v's type, and
// answers a *KeyError for the first object key that is not one of its
// struct's JSON names exactly (same case), or that its object holds twice
// (struct or map). Values are not checked: decoding does that.
func CheckKeys(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return walk(dec, reflect.TypeOf(v), "")
}

func walk(dec *json.Decoder, t reflect.Type, at string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			if seen[key] {
				return &KeyError{At: at, Key: key, Reason: "appears twice"}
			}
			seen[key] = true
			var elem reflect.Type
			switch {
			case t != nil && t.Kind() == reflect.Struct:
				f, ok := fieldNamed(t, key)
				if !ok {
					return &KeyError{At: at, Key: key, Reason: "is not a field here (names are case-sensitive)"}
				}
				elem = f
			case t != nil && t.Kind() == reflect.Map:
				elem = t.Elem()
			}
			if err := walk(dec, elem, join(at, key)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // '}'
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walk(dec, elem, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

// fieldNamed is the type of t's field whose JSON name is exactly key.
func fieldNamed(t reflect.Type, key string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type, true
		}
	}
	return nil, false
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}
