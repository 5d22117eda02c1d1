package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
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

// decodeStrict decodes one JSON object into v: unknown fields, trailing data
// and wrong types are 400, with a message naming the problem. An empty body
// leaves v as it is when optional.
func decodeStrict(body []byte, v any, optional bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badRequest("request body is required")
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
