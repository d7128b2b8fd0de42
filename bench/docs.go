package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// document is one generated word-count input.
type document struct {
	Name, Text string
}

// generateDocs returns n documents of about size bytes each, drawn from a
// vocabulary of vocab pseudo-words with a Zipf-like distribution. The same
// seed gives the same documents.
func generateDocs(n, size, vocab int, seed uint64) []document {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := vocabulary(rng, vocab)
	// Cumulative Zipf(s=1) weights over the vocabulary.
	cum := make([]float64, len(words))
	total := 0.0
	for i := range words {
		total += 1 / float64(i+1)
		cum[i] = total
	}
	docs := make([]document, n)
	for d := range docs {
		var b strings.Builder
		for b.Len() < size {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[search(cum, rng.Float64()*total)])
		}
		docs[d] = document{Name: fmt.Sprintf("doc%04d", d), Text: b.String()}
	}
	return docs
}

// vocabulary makes n distinct lowercase words of 2 to 9 letters.
func vocabulary(rng *rand.Rand, n int) []string {
	seen := map[string]bool{}
	words := make([]string, 0, n)
	for len(words) < n {
		l := 2 + int(math.Floor(rng.Float64()*8))
		var b strings.Builder
		for range l {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}

// search returns the first index whose cumulative weight reaches x.
func search(cum []float64, x float64) int {
	lo, hi := 0, len(cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if cum[mid] < x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// countWords is the word count computed in Go, an independent check of
// both the baseline and jobx.
func countWords(docs []document) map[string]int64 {
	out := map[string]int64{}
	for _, d := range docs {
		for _, w := range strings.Fields(d.Text) {
			out[w]++
		}
	}
	return out
}
