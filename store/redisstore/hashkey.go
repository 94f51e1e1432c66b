package redisstore

import (
	"encoding/hex"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/impressiond/impressiond/sketch"
)

// hashKey holds the secret every instance on one Redis hashes bloom-mode
// pairs with: 16 random bytes as 32 hex digits. The first instance to
// connect creates it (SET NX); every instance then reads it (GET), so all
// of them probe the same bits for a pair.
const hashKey = "imp:hashkey"

// loadHashKey makes sure Redis holds a secret, offering a random one (or
// the one already in use, so that a Redis that lost its data gets it back
// from the instances), and adopts the secret Redis holds.
func (s *Store) loadHashKey(c rueidis.Client) error {
	offer := sketch.NewSecret()
	if h := s.hasher.Load(); h != nil {
		offer = h.Secret()
	}
	ctx, cancel := s.ctx()
	defer cancel()
	res := c.DoMulti(ctx,
		c.B().Set().Key(hashKey).Value(hex.EncodeToString(offer[:])).Nx().Build(),
		c.B().Get().Key(hashKey).Build())
	if err := res[0].Error(); err != nil && !rueidis.IsRedisNil(err) {
		return err
	}
	v, err := res[1].ToString()
	if err != nil {
		return err
	}
	var secret [16]byte
	if b, err := hex.DecodeString(v); err != nil || len(b) != len(secret) {
		return fmt.Errorf("redisstore: %s holds %q, not 32 hex digits", hashKey, v)
	} else {
		copy(secret[:], b)
	}
	if h := s.hasher.Load(); h == nil || h.Secret() != secret {
		if h != nil {
			s.hashKeyChanges.Add(1)
		}
		nh := sketch.NewHasher(secret)
		s.hasher.Store(&nh)
	}
	return nil
}

// keys returns the Hasher of the shared secret; conn has succeeded, so it
// is loaded.
func (s *Store) keys() *sketch.Hasher { return s.hasher.Load() }

// HashKeyChanges counts the times the secret in Redis was found to differ
// from the one this instance had adopted: Redis lost imp:hashkey (a flush,
// a failover without persistence) and another instance set a new one.
func (s *Store) HashKeyChanges() uint64 { return s.hashKeyChanges.Load() }
