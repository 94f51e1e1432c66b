package sketch_test

import (
	"fmt"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

func Example() {
	d, err := sketch.NewBloom(sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 1000, FalsePositiveRate: 0.001})
	if err != nil {
		panic(err)
	}
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, u := []byte("spring-sale"), []byte("user-42")
	fmt.Println(d.TestAndAdd(c, u, start))                     // first sight: counted
	fmt.Println(d.TestAndAdd(c, u, start.Add(59*time.Minute))) // within the TTL: repeat
	fmt.Println(d.TestAndAdd(c, u, start.Add(71*time.Minute))) // after TTL+TTL/6: counted again
	// Output:
	// false
	// true
	// false
}
