// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the
// library Flux and kpt wait with) computes for Kubernetes objects, so the end-to-end tests
// assert against kstatus itself rather than against our reading of its rules.
//
// Input on stdin: one object or a List as JSON (`kubectl get -o json`). Output: one JSON
// line per object, {"name": ..., "status": ..., "message": ...}, in input order.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	var object unstructured.Unstructured
	if err := object.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("parsing stdin as a Kubernetes object: %w", err)
	}
	items := []unstructured.Unstructured{object}
	if object.IsList() {
		list, err := object.ToList()
		if err != nil {
			return fmt.Errorf("reading the List: %w", err)
		}
		items = list.Items
	}
	encoder := json.NewEncoder(out)
	for i := range items {
		result, err := status.Compute(&items[i])
		if err != nil {
			return fmt.Errorf("computing the status of %s: %w", items[i].GetName(), err)
		}
		if err := encoder.Encode(line{items[i].GetName(), result.Status.String(), result.Message}); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	}
	return nil
}
