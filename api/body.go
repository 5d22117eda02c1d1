package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// maxBodyBytes is the contract's limit for API request bodies.
const maxBodyBytes = 64 << 10

// readBody reads an API request body, enforcing the size limit while reading
// (a Content-Length can lie) and the content type.
func readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > maxBodyBytes {
		return nil, &http.MaxBytesError{Limit: maxBodyBytes}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &httpError{Status: http.StatusRequestTimeout, Code: codeRequestTimeout,
				Message: "the request body did not arrive in time", Err: err}
		}
		return nil, badRequest("reading request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := checkContentType(r.Header.Get(echo.HeaderContentType)); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// checkContentType accepts JSON, no type at all, and the form type that
// `curl -d` sends by default; the body is parsed as JSON in every case.
func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "application/x-www-form-urlencoded") {
		return nil
	}
	return &httpError{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMedia,
		Message: fmt.Sprintf("content type %q: send application/json", ct)}
}

// decodeBody reads the request body and decodes it strictly into v.
func decodeBody(c echo.Context, v any, optional bool) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeStrict(body, v, optional)
}

// decodeStrict decodes one JSON object into v, a pointer to a struct:
// unknown fields, trailing data and wrong types are 400, with a message
// naming the problem. An empty body leaves v as it is when optional.
func decodeStrict(body []byte, v any, optional bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badRequest("request body is required")
	}
	if err := checkFieldNames(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("malformed JSON body: trailing data after the object")
	}
	return nil
}

// checkFieldNames rejects every key of a JSON object body that is not
// exactly the name of one of v's fields. encoding/json matches names without
// regard to case ("SHA", "Sha", even "ſha" fill sha), so DisallowUnknownFields
// alone lets them through. A body that is not an object is left to the strict
// decode, which says what is wrong with it.
func checkFieldNames(body []byte, v any) error {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil
	}
	known := jsonFieldNames(reflect.TypeOf(v))
	keys := slices.Sorted(maps.Keys(fields)) // the same message every time
	for _, k := range keys {
		if slices.Contains(known, k) {
			continue
		}
		for _, name := range known {
			if strings.EqualFold(k, name) {
				return badRequest("malformed JSON body: unknown field %q (field names are case-sensitive: %q)", k, name)
			}
		}
		return badRequest("malformed JSON body: unknown field %q", k)
	}
	return nil
}

// jsonFieldNames lists the names encoding/json decodes into a struct type
// (or a pointer to one): the json tag's name, else the Go name.
func jsonFieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			names = append(names, jsonFieldNames(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %q must be %s, not %s", typeErr.Field, typeErr.Type.Name(), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("%v at offset %d", syntaxErr, syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return err.Error()
}
