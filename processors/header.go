package processors

import (
	"fmt"
	"path"
	"strings"
)

// HeaderError is a problem with a handler file's metadata header. File is the
// name given to ParseHeader, Line is 1-based (0 when unknown) and Key names the
// offending metadata key, if any ("retries.count" for a nested key).
type HeaderError struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error reads like `map/test/split.py:7: unknown metadata key "foo"`.
func (e *HeaderError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// blockLine is one line of a header block with its 1-based line in the file.
type blockLine struct {
	text string
	line int
}

// ParseHeader finds the metadata header of the handler file named filename
// (its extension selects where the header is; see docs/handlers.md) and
// parses it. Every error is a *HeaderError.
//
// The header block holds description lines, then a pivot line whose text
// starts with "**" (optionally followed by "yaml" or "json"), then the
// metadata in that format.
func ParseHeader(filename string, src []byte) (*Meta, error) {
	block, err := headerBlock(filename, src)
	if err != nil {
		return nil, err
	}
	pivot := -1
	for i, l := range block {
		if strings.HasPrefix(strings.TrimSpace(l.text), "**") {
			pivot = i
			break
		}
	}
	if pivot < 0 {
		return nil, &HeaderError{File: filename, Line: block[0].line,
			Msg: `metadata header has no "**" line separating the description from the metadata`}
	}
	format := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(block[pivot].text), "**")))
	switch format {
	case "", "yaml":
		format = "yaml"
	case "json":
	default:
		return nil, &HeaderError{File: filename, Line: block[pivot].line,
			Msg: fmt.Sprintf(`unknown metadata format %q after "**" (want yaml or json)`, format)}
	}

	desc := make([]string, 0, pivot)
	for _, l := range block[:pivot] {
		desc = append(desc, l.text)
	}
	body := make([]string, 0, len(block)-pivot-1)
	for _, l := range block[pivot+1:] {
		body = append(body, l.text)
	}
	firstLine := block[pivot].line + 1
	meta, err := decodeMetadata(filename, firstLine, block[pivot].line, format, []byte(strings.Join(dedent(body), "\n")), false)
	if err != nil {
		return nil, err
	}
	meta.Description = strings.TrimSpace(strings.Join(dedent(desc), "\n"))
	return meta, nil
}

// headerBlock returns the lines of the header block of src, chosen by the
// file's extension.
func headerBlock(filename string, src []byte) ([]blockLine, error) {
	lines := strings.Split(strings.ReplaceAll(string(src), "\r", ""), "\n")
	start := 0
	if len(lines) > 0 && strings.HasPrefix(lines[0], "#!") {
		start = 1
	}
	var (
		block []blockLine
		err   error
	)
	switch strings.ToLower(path.Ext(filename)) {
	case ".py":
		block, err = pythonBlock(filename, lines, start)
	case ".js", ".mjs", ".cjs":
		block, err = slashBlock(filename, lines, start)
	case ".sh":
		block = hashBlock(lines, start)
	default:
		if start == 0 {
			return nil, &HeaderError{File: filename, Line: 1,
				Msg: fmt.Sprintf("no metadata header: unknown extension %q and no #! line", path.Ext(filename))}
		}
		// A generic executable: the comment style follows the first line
		// after the #! line.
		i := skipBlank(lines, start)
		switch t := trimLeft(lineAt(lines, i)); {
		case strings.HasPrefix(t, "//") || strings.HasPrefix(t, "/*"):
			block, err = slashBlock(filename, lines, start)
		case strings.HasPrefix(t, `"""`) || strings.HasPrefix(t, `'''`):
			block, err = pythonBlock(filename, lines, start)
		default:
			block = hashBlock(lines, start)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(block) == 0 || allBlank(block) {
		return nil, &HeaderError{File: filename, Line: 1, Msg: "no metadata header: " + headerWhere(filename, start)}
	}
	return block, nil
}

func headerWhere(filename string, start int) string {
	switch strings.ToLower(path.Ext(filename)) {
	case ".py":
		return "the first statement must be a docstring"
	case ".js", ".mjs", ".cjs":
		return "the file must start with a /* ... */ block or // comment lines"
	}
	return "the file must start with # comment lines"
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

func trimLeft(s string) string { return strings.TrimLeft(s, " \t") }

func skipBlank(lines []string, i int) int {
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	return i
}

func allBlank(block []blockLine) bool {
	for _, l := range block {
		if strings.TrimSpace(l.text) != "" {
			return false
		}
	}
	return true
}

// pythonBlock returns the content of the docstring that is the first
// statement, after blank and comment lines.
func pythonBlock(filename string, lines []string, i int) ([]blockLine, error) {
	for i < len(lines) {
		t := trimLeft(lines[i])
		if t == "" || strings.HasPrefix(t, "#") {
			i++
			continue
		}
		break
	}
	if i >= len(lines) {
		return nil, nil
	}
	t := trimLeft(lines[i])
	if len(t) != len(lines[i]) {
		return nil, &HeaderError{File: filename, Line: i + 1, Msg: "no metadata header: the first statement must be a docstring (it is indented)"}
	}
	if p := strings.IndexAny(t, `"'`); p > 0 && p <= 2 && strings.Trim(strings.ToLower(t[:p]), "ur") == "" {
		t = t[p:] // string prefix such as r or u
	}
	var quote string
	switch {
	case strings.HasPrefix(t, `"""`):
		quote = `"""`
	case strings.HasPrefix(t, `'''`):
		quote = `'''`
	case strings.HasPrefix(t, `"`):
		quote = `"`
	case strings.HasPrefix(t, `'`):
		quote = `'`
	default:
		return nil, &HeaderError{File: filename, Line: i + 1, Msg: "no metadata header: the first statement must be a docstring"}
	}
	rest := t[len(quote):]
	var block []blockLine
	for n := i; n < len(lines); n++ {
		if n > i {
			rest = lines[n]
		}
		if end := closingQuote(rest, quote); end >= 0 {
			block = append(block, blockLine{rest[:end], n + 1})
			return block, nil
		}
		if len(quote) == 1 {
			break
		}
		block = append(block, blockLine{rest, n + 1})
	}
	return nil, &HeaderError{File: filename, Line: i + 1, Msg: "unterminated docstring"}
}

// closingQuote returns the index of quote in s, skipping backslash escapes,
// or -1.
func closingQuote(s, quote string) int {
	for j := 0; j < len(s); j++ {
		if s[j] == '\\' {
			j++
			continue
		}
		if strings.HasPrefix(s[j:], quote) {
			return j
		}
	}
	return -1
}

// slashBlock returns the first /* ... */ block or the run of leading //
// lines.
func slashBlock(filename string, lines []string, i int) ([]blockLine, error) {
	i = skipBlank(lines, i)
	if i >= len(lines) {
		return nil, nil
	}
	t := trimLeft(lines[i])
	var block []blockLine
	switch {
	case strings.HasPrefix(t, "/*"):
		rest := t[2:]
		for n := i; n < len(lines); n++ {
			if n > i {
				rest = lines[n]
			}
			if end := strings.Index(rest, "*/"); end >= 0 {
				block = append(block, blockLine{rest[:end], n + 1})
				return stripStars(block), nil
			}
			block = append(block, blockLine{rest, n + 1})
		}
		return nil, &HeaderError{File: filename, Line: i + 1, Msg: "unterminated /* comment"}
	case strings.HasPrefix(t, "//"):
		for n := i; n < len(lines); n++ {
			t := trimLeft(lines[n])
			if !strings.HasPrefix(t, "//") {
				break
			}
			t = strings.TrimPrefix(t[2:], " ")
			block = append(block, blockLine{t, n + 1})
		}
	}
	return block, nil
}

// stripStars removes a JSDoc-style " * " prefix when every non-blank line
// has one.
func stripStars(block []blockLine) []blockLine {
	for _, l := range block {
		t := trimLeft(l.text)
		if t == "" {
			continue
		}
		if !(t == "*" || strings.HasPrefix(t, "* ")) {
			return block
		}
	}
	for i, l := range block {
		t := trimLeft(l.text)
		t = strings.TrimPrefix(t, "*")
		block[i].text = strings.TrimPrefix(t, " ")
	}
	return block
}

// hashBlock returns the run of # comment lines starting at the first
// non-blank line at or after i, with "#" and one space stripped.
func hashBlock(lines []string, i int) []blockLine {
	i = skipBlank(lines, i)
	var block []blockLine
	for n := i; n < len(lines); n++ {
		t := trimLeft(lines[n])
		if !strings.HasPrefix(t, "#") {
			break
		}
		block = append(block, blockLine{strings.TrimPrefix(t[1:], " "), n + 1})
	}
	return block
}

// dedent removes the indentation common to every non-blank line, keeping
// the line count.
func dedent(lines []string) []string {
	prefix := ""
	first := true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		ind := l[:len(l)-len(trimLeft(l))]
		if first {
			prefix, first = ind, false
			continue
		}
		for !strings.HasPrefix(ind, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimPrefix(l, prefix)
		if strings.TrimSpace(out[i]) == "" {
			out[i] = ""
		}
	}
	return out
}
