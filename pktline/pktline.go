package pktline

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// MaxLen is the longest packet, its four length bytes included (git's
// LARGE_PACKET_MAX).
const MaxLen = 65520

// Kind is what one packet is.
type Kind int

const (
	Data        Kind = iota // a length and data
	Flush                   // "0000": the end of a message
	Delim                   // "0001": the end of a section (protocol v2)
	ResponseEnd             // "0002": the end of a response (protocol v2, stateless)
)

// Packet is one pkt-line.
type Packet struct {
	Kind Kind
	Data []byte // Data packets only: the bytes after the length
}

// Line is the data packet of one text line: git's writers end each with a
// newline.
func Line(text string) Packet {
	return Packet{Kind: Data, Data: []byte(text + "\n")}
}

// Text is a data packet's data without its trailing newline.
func (p Packet) Text() string {
	return string(bytes.TrimSuffix(p.Data, []byte("\n")))
}

// SyntaxError is a body that is not a sequence of whole packets, or a
// packet too long to write.
type SyntaxError struct {
	Offset int // where the packet that is wrong begins
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("pkt-line at byte %d: %s", e.Offset, e.Reason)
}

// special are the packets with no data, by length.
var special = map[uint64]Kind{0: Flush, 1: Delim, 2: ResponseEnd}

// Decode splits body into packets. A length that is not four hex digits,
// 3, over MaxLen or past the end of body is a *SyntaxError. Data packets
// share body's memory.
func Decode(body []byte) ([]Packet, error) {
	var out []Packet
	for off := 0; off < len(body); {
		rest := body[off:]
		if len(rest) < 4 {
			return nil, &SyntaxError{Offset: off, Reason: "a length cut short"}
		}
		n, err := strconv.ParseUint(string(rest[:4]), 16, 16)
		if err != nil {
			return nil, &SyntaxError{Offset: off, Reason: fmt.Sprintf("length %q is not four hex digits", rest[:4])}
		}
		if k, ok := special[n]; ok {
			out = append(out, Packet{Kind: k})
			off += 4
			continue
		}
		switch {
		case n < 4:
			return nil, &SyntaxError{Offset: off, Reason: fmt.Sprintf("length %d", n)}
		case n > MaxLen:
			return nil, &SyntaxError{Offset: off, Reason: fmt.Sprintf("length %d is over %d", n, MaxLen)}
		case int(n) > len(rest):
			return nil, &SyntaxError{Offset: off, Reason: fmt.Sprintf("length %d, %d bytes left", n, len(rest))}
		}
		out = append(out, Packet{Kind: Data, Data: rest[4:n:n]})
		off += int(n)
	}
	return out, nil
}

// Encode writes packets; a data packet longer than MaxLen is a
// *SyntaxError.
func Encode(packets []Packet) ([]byte, error) {
	var b bytes.Buffer
	for _, p := range packets {
		switch p.Kind {
		case Flush:
			b.WriteString("0000")
		case Delim:
			b.WriteString("0001")
		case ResponseEnd:
			b.WriteString("0002")
		default:
			if len(p.Data)+4 > MaxLen {
				return nil, &SyntaxError{Offset: b.Len(), Reason: fmt.Sprintf("%d bytes of data do not fit in a packet", len(p.Data))}
			}
			fmt.Fprintf(&b, "%04x", len(p.Data)+4)
			b.Write(p.Data)
		}
	}
	return b.Bytes(), nil
}

// Read reads one packet from a stream (a response git is still
// writing), with Decode's rules. io.EOF: the stream ended between
// packets.
func Read(r io.Reader) (Packet, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Packet{}, err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return Packet{}, &SyntaxError{Reason: fmt.Sprintf("length %q is not four hex digits", hdr[:])}
	}
	if k, ok := special[n]; ok {
		return Packet{Kind: k}, nil
	}
	if n < 4 || n > MaxLen {
		return Packet{}, &SyntaxError{Reason: fmt.Sprintf("length %d", n)}
	}
	data := make([]byte, n-4)
	if _, err := io.ReadFull(r, data); err != nil {
		return Packet{}, io.ErrUnexpectedEOF
	}
	return Packet{Kind: Data, Data: data}, nil
}
