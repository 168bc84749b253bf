package memory_test

import (
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/runtime/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memory.New() })
}

func TestClusterConformance(t *testing.T) {
	storetest.RunCluster(t, func(*testing.T) store.Store { return memory.New() })
}

func TestHistoryConformance(t *testing.T) {
	storetest.RunHistory(t, func(*testing.T) store.Store { return memory.New() })
}
