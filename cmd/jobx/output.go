package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/jobx/jobx/kvmodel"
)

// keyFields are JobX's key field names, which the stored JSON leaves out
// (the key is in the etcd key).
var keyFields = map[string]string{
	"workflow": "workflow_name", "job": "job_name", "step": "step_name",
	"handler": "handler_name", "request": "request_id", "invocation": "invocation_id",
}

// entityFields returns e's JobX fields, with its key field, as a map.
func entityFields(e kvmodel.Entity) map[string]any {
	raw, _ := kvmodel.Encode(e)
	m := map[string]any{}
	json.Unmarshal(raw, &m)
	id := e.Identity()
	m[keyFields[e.Class()]] = id[len(id)-1]
	return m
}

// printEntity writes e as JSON (-o json) or as "field  value" lines, the
// key field first. omit names fields left out of the text form.
func (a *app) printEntity(e kvmodel.Entity, omit ...string) error {
	m := entityFields(e)
	if a.output == "json" {
		return writeJSON(a.stdout, m)
	}
	key := keyFields[e.Class()]
	names := make([]string, 0, len(m))
	for k := range m {
		if k != key && !slices.Contains(omit, k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%s\n", key, textValue(m[key]))
	for _, k := range names {
		fmt.Fprintf(tw, "%s\t%s\n", k, textValue(m[k]))
	}
	return tw.Flush()
}

// printTable writes rows under a header, or the JSON of items with -o json.
func (a *app) printTable(items any, header []string, rows [][]string) error {
	if a.output == "json" {
		return writeJSON(a.stdout, items)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// textValue renders a field value: strings as they are, null as "-",
// anything else as compact JSON.
func textValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return "-"
		}
		return v
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// rawText renders a JSON value for key<TAB>value output: a string
// unquoted, anything else as compact JSON.
func rawText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func shortID(s string) string { return s[:min(len(s), 12)] }
