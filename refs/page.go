package refs

import "strconv"

// MaxListLimit bounds one page of a listing (pins, projects).
const MaxListLimit = 1000

// CheckPage validates a page request of any listing, the one place that
// does: limit is 1 to MaxListLimit, and cursor is empty (the first page) or
// one that valid accepts (one this service handed out).
func CheckPage(cursor string, limit int, valid func(cursor string) bool) error {
	if limit < 1 || limit > MaxListLimit {
		return &InvalidInputError{Field: "limit", Reason: "must be from 1 to " + strconv.Itoa(MaxListLimit)}
	}
	if cursor != "" && !valid(cursor) {
		return &InvalidInputError{Field: "cursor", Reason: "is not a cursor this service handed out"}
	}
	return nil
}
