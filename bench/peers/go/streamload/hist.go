package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets: exact below 64 ns, then 64 buckets per
// power of two (at most 1/64 = 1.6% relative error). One per worker goroutine, merged at
// the end, so recording takes no lock.
const (
	subBits  = 6
	subCount = 1 << subBits
	nBuckets = 64 * subCount
)

type histogram struct {
	counts   [nBuckets]int64
	n        int64
	sum      int64
	min, max int64
}

func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 1 - subBits
	return (shift+1)<<subBits + int(v>>uint(shift)) - subCount
}

// bucketRange is the [low, high) range of values bucket i holds.
func bucketRange(i int) (int64, int64) {
	if i < subCount {
		return int64(i), int64(i) + 1
	}
	shift := uint(i>>subBits - 1)
	low := int64(i&(subCount-1)+subCount) << shift
	return low, low + int64(1)<<shift
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile is the value at rank ceil(q*n): the middle of its bucket, clamped to [min, max].
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, high := bucketRange(i)
			v := low + (high-low-1)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}
