package main

import (
	"testing"
	"time"
)

func TestBucketsAreContiguousAndOrdered(t *testing.T) {
	previous := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, 1<<62 + 1} {
		i := bucketOf(v)
		low, high := bucketRange(i)
		if v < low || v >= high {
			t.Fatalf("value %d in bucket %d = [%d, %d)", v, i, low, high)
		}
		if i < previous {
			t.Fatalf("bucket of %d (%d) below the previous value's (%d)", v, i, previous)
		}
		if high-low > 1 && float64(high-low)/float64(low) > 1.0/subCount+1e-12 {
			t.Fatalf("bucket %d = [%d, %d) wider than 1/%d of its value", i, low, high, subCount)
		}
		previous = i
	}
	for i := 0; i < nBuckets-1; i++ {
		_, high := bucketRange(i)
		next, _ := bucketRange(i + 1)
		if high != next {
			t.Fatalf("gap between bucket %d (ends %d) and %d (starts %d)", i, high, i+1, next)
		}
	}
}

func TestQuantilesOfAKnownDistribution(t *testing.T) {
	var a, b histogram
	for v := 1; v <= 10000; v++ { // 1..10000 µs, split over two histograms
		h := &a
		if v%2 == 0 {
			h = &b
		}
		h.record(time.Duration(v) * time.Microsecond)
	}
	a.merge(&b)
	if a.n != 10000 || a.min != int64(time.Microsecond) || a.max != int64(10000*time.Microsecond) {
		t.Fatalf("n=%d min=%d max=%d", a.n, a.min, a.max)
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 5000}, {0.9, 9000}, {0.99, 9900}, {0.999, 9990}, {1, 10000}} {
		got := float64(a.quantile(c.q)) / float64(time.Microsecond)
		if got < c.want*(1-2.0/subCount) || got > c.want*(1+2.0/subCount) {
			t.Errorf("q%.3f = %.1f µs, want %.0f within %.1f%%", c.q, got, c.want, 200.0/subCount)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram quantile is not 0")
	}
}
