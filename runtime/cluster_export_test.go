package statefun

import "github.com/statefun-go/statefun/runtime/internal/cluster"

// StopHeartbeatsForTest makes r's cluster node stop renewing its leases,
// as a node that died would, without handing anything off.
func StopHeartbeatsForTest(r *Runtime) {
	r.cluster.cancel()
	<-r.cluster.done
}

// ShardOfForTest returns the shard of an entity in r's cluster.
func ShardOfForTest(r *Runtime, entityType, id string) int {
	return cluster.ShardOf(entityType, id, r.cluster.node.Shards())
}
