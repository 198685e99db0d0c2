//go:build tools

// Package tools pins the etcd server command built by ../cluster, so
// `go mod tidy` keeps every module it needs in go.mod/go.sum.
package tools

import _ "go.etcd.io/etcd/server/v3"
