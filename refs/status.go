package refs

import "fmt"

// status is what a Lua transition answered, decoded once from its reply
// (see scripts.go for which script answers which).
type status uint8

const (
	statusNone       status = iota + 1 // no record
	statusNew                          // pin: recorded now (also over a deleted record)
	statusReopened                     // pin: finished -> pinned
	statusExists                       // pin: already pinned at that SHA
	statusConflict                     // pin: the record holds another SHA
	statusFinished                     // finish: pinned -> finished
	statusUnchanged                    // finish: already finished or deleted
	statusClaimed                      // claim, tombstone: the caller holds the claim
	statusNotDue                       // claim: not due yet
	statusDeleted                      // claim, commit: the record is deleted
	statusReclaimed                    // commit: a re-pin called the deletion off
	statusSuperseded                   // commit: another deleter holds the claim
	statusPurged                       // purge: the record is gone
	statusKept                         // purge: not due
	statusAdopted                      // adopt: tracked now
	statusKnown                        // adopt: a record exists
	statusLive                         // tombstone: a live pin exists
)

var statusWords = map[string]status{
	"none": statusNone, "new": statusNew, "reopened": statusReopened, "exists": statusExists,
	"conflict": statusConflict, "finished": statusFinished, "unchanged": statusUnchanged,
	"claimed": statusClaimed, "notdue": statusNotDue, "deleted": statusDeleted,
	"reclaimed": statusReclaimed, "superseded": statusSuperseded, "purged": statusPurged,
	"kept": statusKept, "adopted": statusAdopted, "known": statusKnown, "live": statusLive,
}

func parseStatus(word string) (status, error) {
	st, ok := statusWords[word]
	if !ok {
		return 0, fmt.Errorf("unknown script status %q", word)
	}
	return st, nil
}

func (st status) String() string {
	for w, s := range statusWords {
		if s == st {
			return w
		}
	}
	return fmt.Sprintf("status(%d)", uint8(st))
}
