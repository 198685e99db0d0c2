// Command selectorref prints what k8s.io/apimachinery makes of label selectors, so the
// end-to-end tests compare kube-baseline's selector evaluation with Kubernetes' own code
// rather than with our reading of its rules (e2e/tests/selector_reference.rs).
//
// Input on stdin: JSON lines {"selector": <metav1.LabelSelector>, "labels": {...}}.
// Output: one JSON line per input line, in order: {"error": "..."} when
// metav1.LabelSelectorAsSelector rejects the selector, else {"matches": true|false}, what
// the selector's Matches says of labels.Set(labels).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

type input struct {
	Selector *metav1.LabelSelector `json:"selector"`
	Labels   map[string]string     `json:"labels"`
}

type output struct {
	Error   string `json:"error,omitempty"`
	Matches bool   `json:"matches"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "selectorref:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	writer := bufio.NewWriter(out)
	encoder := json.NewEncoder(writer)
	for line := 1; scanner.Scan(); line++ {
		var request input
		if err := json.Unmarshal(scanner.Bytes(), &request); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		var result output
		selector, err := metav1.LabelSelectorAsSelector(request.Selector)
		if err != nil {
			result.Error = err.Error()
		} else {
			result.Matches = selector.Matches(labels.Set(request.Labels))
		}
		if err := encoder.Encode(result); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	return writer.Flush()
}
