package router

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit of Accept calls. Each accepted message must be committed
// before its call is answered; committed one call at a time, every call
// pays a transaction of its own (on SQLite one writer at a time: its turn,
// its statements, its commit's write of the pages it changed; on
// PostgreSQL its round trips and its commit). Calls of one tenant that
// arrive while a transaction of that tenant's Accepts is running queue up,
// and the next transaction takes them all (up to MaxBatch messages) with
// one multi-row insert and one commit; each call is answered when that
// commit is done. A call that finds nothing running runs at once (no
// waiting for company), so a lone call costs what it did before.
//
// Failure stays each call's own: a group whose statements fail (one call's
// key taken by a concurrent transaction and purged since, a cancelled
// context, a database error) is rolled back whole, then each of its calls
// runs alone in its own transaction, as without grouping, and gets its
// own answer or error. Nothing of the failed group was stored, so nothing
// is lost or stored twice. A failure of the commit itself (its outcome
// unknown) is returned to every call of the group, as it would be to a
// call alone; a retry with the same idempotency key answers the first
// message if it was stored.

// groupTxTimeout bounds a shared transaction: it runs on no single call's
// context (a call that gives up must not fail the others).
const groupTxTimeout = 2 * time.Minute

// acceptQueues holds each tenant's waiting Accept calls.
type acceptQueues struct {
	mu sync.Mutex
	m  map[string]*acceptQueue
	// shared counts the transactions that held several calls, alone the
	// calls run alone after their group failed.
	shared, alone atomic.Int64
}

type acceptQueue struct {
	waiting []*acceptReq
	running int // transactions of this queue running
}

// groupsInFlight is how many shared transactions of one tenant run at
// once. One: SQLite's writers take turns anyway, and one at a time makes
// the groups largest; on PostgreSQL two or three measured no faster (16
// callers, 2 cores), and two groups holding the same keys would wait on
// each other.
const groupsInFlight = 1

// grouped queues req and returns its answer once the transaction holding
// its messages has ended.
func (s *Service) grouped(tenantID string, req *acceptReq) ([]Accepted, error) {
	req.done = make(chan struct{})
	g := &s.groups
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*acceptQueue{}
	}
	q := g.m[tenantID]
	if q == nil {
		q = &acceptQueue{}
		g.m[tenantID] = q
	}
	q.waiting = append(q.waiting, req)
	lead := q.running < groupsInFlight
	if lead {
		q.running++
	}
	g.mu.Unlock()
	if lead {
		// Fewer transactions than allowed were running: this call's group
		// (itself and whoever queued meanwhile) runs here. The calls that
		// queue while it runs are run by a goroutine that takes over.
		for {
			grp := s.takeGroup(tenantID, q)
			if grp == nil {
				break
			}
			s.runGroup(tenantID, grp)
			select {
			case <-req.done:
			default:
				continue // another runner took this call: run the next group
			}
			// Hand over: the calls that queued meanwhile, and those of
			// this group coming back, are run by a goroutine.
			if len(grp) > 1 {
				go s.drain(tenantID, q, len(grp))
			} else if next := s.takeGroup(tenantID, q); next != nil {
				go func() {
					s.runGroup(tenantID, next)
					s.drain(tenantID, q, len(next))
				}()
			}
			break
		}
	}
	<-req.done
	return req.out, req.err
}

// drain runs the queue's groups until it is empty; last is the size of the
// group its runner ran before.
func (s *Service) drain(tenantID string, q *acceptQueue, last int) {
	for {
		s.settle(q, last)
		grp := s.takeGroup(tenantID, q)
		if grp == nil {
			return
		}
		s.runGroup(tenantID, grp)
		last = len(grp)
	}
}

// takeGroup takes the next calls off the queue, up to MaxBatch messages
// (at least one call), answering at once those whose context has ended.
// With nothing left it counts the caller's runner out and returns nil.
func (s *Service) takeGroup(tenantID string, q *acceptQueue) []*acceptReq {
	g := &s.groups
	g.mu.Lock()
	defer g.mu.Unlock()
	var grp []*acceptReq
	n, i := 0, 0
	for ; i < len(q.waiting); i++ {
		r := q.waiting[i]
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		if len(grp) > 0 && n+len(r.batch) > MaxBatch {
			break
		}
		grp = append(grp, r)
		n += len(r.batch)
	}
	q.waiting = append(q.waiting[:0:0], q.waiting[i:]...)
	if len(grp) == 0 {
		q.running--
		if q.running == 0 {
			delete(g.m, tenantID)
		}
		return nil
	}
	return grp
}

// settleWait bounds how long a runner waits for the calls of the group
// it just answered to come back (see settle).
const settleWait = 200 * time.Microsecond

// settle lets the callers just answered (last of them) queue their next
// calls before the next group is taken: they all wake at once, and each
// prepares its messages (sealing) first; a runner that took at once the
// one or two already queued would commit a group of one or two, and make
// the others wait for its whole transaction. It waits until last more
// calls are queued, at most settleWait, giving the processor to them; a
// runner whose last group was one call does not wait.
func (s *Service) settle(q *acceptQueue, last int) {
	if last < 2 {
		return
	}
	s.groups.mu.Lock()
	want := len(q.waiting) + last
	s.groups.mu.Unlock()
	deadline := time.Now().Add(settleWait)
	for time.Now().Before(deadline) {
		runtime.Gosched()
		s.groups.mu.Lock()
		n := len(q.waiting)
		s.groups.mu.Unlock()
		if n >= want || n >= MaxBatch {
			return
		}
	}
}

// runGroup stores a group's messages in one transaction and answers its
// calls; if a statement fails, each call runs alone.
func (s *Service) runGroup(tenantID string, grp []*acceptReq) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(grp[0].ctx), groupTxTimeout)
	committing, err := s.acceptGroup(ctx, tenantID, grp)
	cancel()
	if len(grp) > 1 {
		s.groups.shared.Add(1)
	}
	switch {
	case err == nil:
		if s.Wake != nil {
			s.Wake()
		}
	case committing:
		for _, r := range grp {
			r.out, r.err = nil, err
		}
	default:
		for _, r := range grp {
			s.groups.alone.Add(1)
			r.out, r.err = s.acceptAlone(tenantID, r)
		}
	}
	for _, r := range grp {
		close(r.done)
	}
}
