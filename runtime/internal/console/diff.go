package console

import (
	"fmt"
	"strings"
)

// diffLine is one line of a line diff: Op is "same", "del" (only in the
// older text) or "add" (only in the newer); or "skip", standing for
// unchanged lines left out, with Text saying how many.
type diffLine struct {
	Op   string
	Text string
}

// maxDiffCells bounds the longest-common-subsequence table (4 bytes a
// cell): two states that differ in more lines than that are shown as the
// old lines removed and the new ones added, not aligned line by line.
const maxDiffCells = 1 << 20

// diffLines is a line diff of two texts from their longest common
// subsequence of lines, after setting aside the lines they start and end
// with in common (most state changes touch a few lines of a long JSON).
func diffLines(older, newer string) []diffLine {
	a, b := splitLines(older), splitLines(newer)
	prefix := 0
	for prefix < len(a) && prefix < len(b) && a[prefix] == b[prefix] {
		prefix++
	}
	suffix := 0
	for suffix < len(a)-prefix && suffix < len(b)-prefix && a[len(a)-1-suffix] == b[len(b)-1-suffix] {
		suffix++
	}
	out := make([]diffLine, 0, len(a)+len(b))
	for _, line := range a[:prefix] {
		out = append(out, diffLine{Op: "same", Text: line})
	}
	out = append(out, diffMiddle(a[prefix:len(a)-suffix], b[prefix:len(b)-suffix])...)
	for _, line := range a[len(a)-suffix:] {
		out = append(out, diffLine{Op: "same", Text: line})
	}
	return out
}

func diffMiddle(a, b []string) []diffLine {
	var out []diffLine
	if len(a)*len(b) > maxDiffCells {
		for _, line := range a {
			out = append(out, diffLine{Op: "del", Text: line})
		}
		for _, line := range b {
			out = append(out, diffLine{Op: "add", Text: line})
		}
		return out
	}
	// lcs[i][j] is the length of the longest common subsequence of a[i:]
	// and b[j:], so the walk below can go forward from the start.
	width := len(b) + 1
	lcs := make([]int32, (len(a)+1)*width)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*width+j] = lcs[(i+1)*width+j+1] + 1
			} else {
				lcs[i*width+j] = max(lcs[(i+1)*width+j], lcs[i*width+j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{Op: "same", Text: a[i]})
			i++
			j++
		case lcs[(i+1)*width+j] >= lcs[i*width+j+1]:
			out = append(out, diffLine{Op: "del", Text: a[i]})
			i++
		default:
			out = append(out, diffLine{Op: "add", Text: b[j]})
			j++
		}
	}
	for ; i < len(a); i++ {
		out = append(out, diffLine{Op: "del", Text: a[i]})
	}
	for ; j < len(b); j++ {
		out = append(out, diffLine{Op: "add", Text: b[j]})
	}
	return out
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// diffContext is how many unchanged lines a diff shows around a change.
const diffContext = 3

// withContext leaves out the unchanged lines more than diffContext lines
// away from any change, so a change to a long state is seen at once.
func withContext(lines []diffLine) []diffLine {
	near := make([]bool, len(lines))
	for i, l := range lines {
		if l.Op == "same" {
			continue
		}
		for j := max(0, i-diffContext); j <= min(len(lines)-1, i+diffContext); j++ {
			near[j] = true
		}
	}
	var out []diffLine
	for i := 0; i < len(lines); {
		if near[i] {
			out = append(out, lines[i])
			i++
			continue
		}
		start := i
		for i < len(lines) && !near[i] {
			i++
		}
		if i-start == 1 { // a marker would take the line's own room
			out = append(out, lines[start])
			continue
		}
		out = append(out, diffLine{Op: "skip", Text: fmt.Sprintf("%d unchanged lines", i-start)})
	}
	return out
}
