package refs

import (
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// A batch spans several script calls (manyChunk pins each); every pin gets
// its own answer, in the order asked, with its own arguments. Each answer
// names its pin as Redis knows it, so an answer out of order shows.
func TestRunManyAnswersEveryPinInOrder(t *testing.T) {
	s := &Store{Client: testdata.StartRedis(t).Client(t)}
	ctx := t.Context()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	n := 2*manyChunk + 17
	refs := make(map[PipelineID]ObjectID, n)
	for i := 1; i <= n; i++ {
		sha := ObjectID(string(rune('a'+i%6)) + string(benchSHA[1:]))
		refs[PipelineID(i)] = sha
	}
	adopted, err := s.AdoptMany(ctx, "group/app", refs, now, now)
	if err != nil || adopted != n {
		t.Fatalf("AdoptMany = %d, %v; want %d", adopted, err, n)
	}
	ids := make([]PipelineID, 0, n)
	for i := n; i >= 1; i-- { // not the order they were adopted in
		ids = append(ids, PipelineID(i))
	}
	// Past max-age: every one is due.
	outs, err := s.ClaimDue(ctx, "group/app", ids, now.Add(2*time.Hour), time.Hour, "tok")
	if err != nil || len(outs) != n {
		t.Fatalf("ClaimDue = %d answers, %v; want %d", len(outs), err, n)
	}
	for i, out := range outs {
		if out.Status != statusClaimed || out.ID != ids[i] || out.Pin.PipelineID != ids[i] || out.Pin.SHA != refs[ids[i]] || !out.Pin.deletionClaimed {
			t.Fatalf("answer %d = %+v; want pipeline %d claimed at %s", i, out, ids[i], refs[ids[i]])
		}
	}
	// Asked for a pin it does not know, the script says so in its place.
	outs, err = s.ClaimDue(ctx, "group/app", []PipelineID{1, PipelineID(n + 1), 2}, now.Add(2*time.Hour), time.Hour, "tok")
	if err != nil || len(outs) != 3 || outs[0].Status != statusClaimed || outs[1].Status != statusNone || outs[2].Status != statusClaimed {
		t.Fatalf("ClaimDue with an unknown pin = %+v, %v", outs, err)
	}
}
