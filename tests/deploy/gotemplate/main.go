// Renders a Helm chart's templates with Go's text/template, the engine Helm uses, for machines
// without helm. Only the Sprig/Helm functions the videopipe chart calls are provided, written
// here (toYaml as block YAML with sorted keys, as Helm writes it). Not helm: no schema
// validation, no hooks, no subcharts, no lookup.
// Usage: go run main.go CHART_DIR VALUES_JSON CHART_JSON RELEASE_NAME > rendered.yaml
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

func toFloat(v interface{}) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int:
		return float64(n)
	}
	panic(fmt.Sprintf("not a number: %v", v))
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

func scalar(v interface{}) string {
	b, _ := json.Marshal(v) // strings double-quoted, numbers, true/false, null: all valid YAML
	return string(b)
}

// yamlLines writes maps and lists in block style, scalars in JSON form.
func yamlLines(v interface{}) []string {
	var out []string
	switch t := v.(type) {
	case map[string]interface{}:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			key := k
			if !plainKey.MatchString(k) {
				key = scalar(k)
			}
			sub := t[k]
			switch s := sub.(type) {
			case map[string]interface{}:
				if len(s) == 0 {
					out = append(out, key+": {}")
					continue
				}
			case []interface{}:
				if len(s) == 0 {
					out = append(out, key+": []")
					continue
				}
			default:
				out = append(out, key+": "+scalar(sub))
				continue
			}
			out = append(out, key+":")
			for _, line := range yamlLines(sub) {
				out = append(out, "  "+line)
			}
		}
	case []interface{}:
		for _, item := range t {
			lines := yamlLines(item)
			out = append(out, "- "+lines[0])
			for _, line := range lines[1:] {
				out = append(out, "  "+line)
			}
		}
	default:
		out = append(out, scalar(v))
	}
	return out
}

func main() {
	chartDir, valuesPath, chartPath, release := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		panic(err)
	}
	var values map[string]interface{}
	if err := json.Unmarshal(raw, &values); err != nil {
		panic(err)
	}
	chartRaw, err := os.ReadFile(chartPath)
	if err != nil {
		panic(err)
	}
	var chart map[string]interface{}
	if err := json.Unmarshal(chartRaw, &chart); err != nil {
		panic(err)
	}
	root := template.New("chart").Option("missingkey=error")
	funcs := template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var buf bytes.Buffer
			err := root.ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"toYaml": func(v interface{}) string { return strings.Join(yamlLines(v), "\n") },
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"quote": func(v interface{}) string { return fmt.Sprintf("%q", fmt.Sprint(v)) },
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"trim":       strings.TrimSpace,
		"default": func(d interface{}, v interface{}) interface{} {
			if v == nil || v == "" || v == false {
				return d
			}
			return v
		},
		"mul": func(a, b interface{}) int { return int(toFloat(a) * toFloat(b)) },
		"join": func(sep string, list []interface{}) string {
			parts := make([]string, len(list))
			for i, v := range list {
				parts[i] = fmt.Sprint(v)
			}
			return strings.Join(parts, sep)
		},
	}
	root.Funcs(funcs)
	files, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	sort.Strings(files)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		if _, err := root.New(filepath.Base(f)).Parse(string(text)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	data := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": release, "Namespace": "default", "Service": "Helm"},
		"Chart":   chart,
	}
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "_") {
			continue // helpers: only through include
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt: rendered (so its errors show), not a manifest
		}
		fmt.Printf("---\n# Source: %s\n%s\n", name, buf.String())
	}
}
