package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

var _ store.Cluster = (*Store)(nil)

// Secret implements store.Cluster.
func (s *Store) Secret(_ context.Context, candidate []byte) ([]byte, error) {
	if len(candidate) < 32 {
		return nil, fmt.Errorf("cluster secret: a candidate of %d bytes is too short; use 32 random bytes", len(candidate))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	if s.secret == nil {
		s.secret = slices.Clone(candidate)
	}
	return slices.Clone(s.secret), nil
}

// InitShards implements store.Cluster.
func (s *Store) InitShards(_ context.Context, n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("shard count %d: use at least 1", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	if s.shards == 0 {
		s.shards = n
		for i := range n {
			s.leases[i] = store.Lease{Shard: i}
		}
	}
	return s.shards, nil
}

// Heartbeat implements store.Cluster.
func (s *Store) Heartbeat(_ context.Context, node store.Node, ttl time.Duration) ([]store.Lease, error) {
	if err := checkLeaseArgs(node.ID, ttl); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	now := time.Now()
	if cur, ok := s.nodes[node.ID]; ok {
		node.StartedAt = cur.StartedAt
	} else if node.StartedAt.IsZero() {
		node.StartedAt = now
	}
	node.Heartbeat = now
	s.nodes[node.ID] = node
	var held []store.Lease
	for i := range s.shards {
		l := s.leases[i]
		if l.Owner != node.ID {
			continue
		}
		l.Expires = now.Add(ttl)
		s.leases[i] = l
		l.Remaining = ttl
		held = append(held, l)
	}
	return held, nil
}

// checkLeaseArgs refuses what would register a nameless node or hand out
// a lease that is expired from the start.
func checkLeaseArgs(node string, ttl time.Duration) error {
	if node == "" {
		return errors.New("the node ID is empty; name the node (its advertised address)")
	}
	if ttl <= 0 {
		return fmt.Errorf("lease time to live %v: use a positive duration", ttl)
	}
	return nil
}

// Nodes implements store.Cluster.
func (s *Store) Nodes(_ context.Context) ([]store.Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	now := time.Now()
	var out []store.Node
	for _, n := range s.nodes {
		n.Age = now.Sub(n.Heartbeat)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b store.Node) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Acquire implements store.Cluster.
func (s *Store) Acquire(_ context.Context, node string, shards []int, ttl time.Duration) ([]store.Lease, error) {
	if err := checkLeaseArgs(node, ttl); err != nil {
		return nil, fmt.Errorf("acquire leases: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	now := time.Now()
	var got []store.Lease
	for _, sh := range shards {
		l, ok := s.leases[sh]
		if !ok {
			continue
		}
		if l.Owner != "" && l.Owner != node && !l.Expires.Before(now) {
			continue
		}
		l.Owner, l.Epoch, l.Expires = node, l.Epoch+1, now.Add(ttl)
		s.leases[sh] = l
		l.Remaining = ttl
		got = append(got, l)
	}
	return got, nil
}

// Release implements store.Cluster.
func (s *Store) Release(_ context.Context, node string, shards []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.release(node, shards)
	return nil
}

func (s *Store) release(node string, shards []int) {
	now := time.Now()
	for _, sh := range shards {
		if l, ok := s.leases[sh]; ok && l.Owner == node {
			l.Owner, l.Expires = "", now
			s.leases[sh] = l
		}
	}
}

// Leases implements store.Cluster.
func (s *Store) Leases(_ context.Context) ([]store.Lease, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	now := time.Now()
	out := make([]store.Lease, 0, s.shards)
	for i := range s.shards {
		l := s.leases[i]
		l.Remaining = l.Expires.Sub(now)
		out = append(out, l)
	}
	return out, nil
}

// Leave implements store.Cluster.
func (s *Store) Leave(_ context.Context, node string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	delete(s.nodes, node)
	return nil
}

// SaveConsumerPositionFenced implements store.Cluster.
func (s *Store) SaveConsumerPositionFenced(_ context.Context, consumer, entityType string, pos store.Position, fence *store.Fence) error {
	if _, err := parsePosition(pos); err != nil {
		return fmt.Errorf("save the position of consumer %q in the feed of %q: %w", consumer, entityType, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if err := s.checkFence(fence); err != nil {
		return err
	}
	s.positions[consumerKey{consumer, entityType}] = pos
	return nil
}

// checkFence refuses a write whose writer lost a lease it names. Called
// with s.mu held.
func (s *Store) checkFence(f *store.Fence) error {
	if f == nil {
		return nil
	}
	if f.Node == "" {
		return errors.New("a fence must name its node")
	}
	var lost []int
	for _, se := range f.Shards {
		if l := s.leases[se.Shard]; l.Owner != f.Node || l.Epoch != se.Epoch {
			lost = append(lost, se.Shard)
		}
	}
	if len(lost) > 0 {
		return &store.FencedError{Shards: lost}
	}
	return nil
}
